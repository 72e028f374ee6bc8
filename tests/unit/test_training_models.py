"""Which weights a job starts from: a registered id, a model directory or a job's adapter."""

from __future__ import annotations

import json

import pytest

from llamaray.config import PlatformConfig
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.training.models import resolve_model


@pytest.fixture()
def platform(tmp_path) -> PlatformConfig:
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "models" / "m" / "config.json").write_text("{}")
    adapter = tmp_path / "data" / "jobs" / "j" / "checkpoints" / "iter-3"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "models" / "m")})
    )
    return PlatformConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "models": [{"model_id": "m", "aliases": ["llama3_8b"], "path": str(tmp_path / "models" / "m")}],
        }
    )


def test_registered_ids_model_dirs_and_adapters(platform, tmp_path):
    assert resolve_model("llama3_8b", platform, "model").model_path == str(tmp_path / "models" / "m")
    assert resolve_model((tmp_path / "models" / "m").as_uri(), platform, "m").adapter_path is None
    adapter = tmp_path / "data" / "jobs" / "j" / "checkpoints" / "iter-3"
    weights = resolve_model(adapter.as_uri(), platform, "finetuned_model")
    assert (weights.model_path, weights.adapter_path) == (str(tmp_path / "models" / "m"), str(adapter))


def test_unknown_and_unreadable_models(platform, tmp_path):
    with pytest.raises(NotFoundError) as unknown:
        resolve_model("llama3_70b", platform, "model")
    assert unknown.value.param == "model"
    with pytest.raises(NotFoundError):
        resolve_model((tmp_path / "data" / "missing").as_uri(), platform, "finetuned_model")
    with pytest.raises(InvalidRequestError):
        resolve_model("file:///etc", platform, "finetuned_model")
