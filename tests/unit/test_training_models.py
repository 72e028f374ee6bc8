"""Which weights a job starts from: a registered id, a model directory or a job's adapter."""

from __future__ import annotations

import json

import pytest

from llamaray.config import PlatformConfig
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.training.models import linear_module_names, resolve_model


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


def _tiny_llama(path, tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        tie_word_embeddings=tied,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("tied", [False, True])
def test_adaptable_layers_read_from_the_safetensors_headers_match_the_model(tmp_path, tied):
    """The headers name every linear layer the model has (a tied lm_head too, though its weight is
    not stored) without building it; the embedding, which peft adapts as well, is named beside."""
    import torch
    from transformers import AutoModelForCausalLM

    path = _tiny_llama(tmp_path / "m", tied)
    model = AutoModelForCausalLM.from_pretrained(path)
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linear_module_names(str(path)) == linear | {"embed_tokens"}


def test_a_checkpoint_without_safetensors_is_built_on_the_meta_device(tmp_path):
    path = _tiny_llama(tmp_path / "m", tied=False)
    for shard in path.glob("*.safetensors"):  # as a `pytorch_model.bin` checkpoint has none
        shard.unlink()
    assert "lm_head" in linear_module_names(str(path)) and "embed_tokens" not in linear_module_names(str(path))
