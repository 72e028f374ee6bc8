"""The adapter catalog without Ray: which ids name an adapter, and the checks that keep a bad
adapter off an engine (a 400 that says why, never an engine error)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from llamaray.api.models import RegisterAdapterRequest
from llamaray.config import ModelConfig
from llamaray.errors import ConflictError, InvalidRequestError, NotFoundError
from llamaray.inference.adapters import AdapterCatalog, adapter_ref
from llamaray.store.metadata import MetadataStore


class Jobs:
    """JobRecords over a dict, as the tracker answers them."""

    def __init__(self, records: dict[str, dict]) -> None:
        self.records = records

    async def record(self, job_uuid: str) -> dict:
        if job_uuid not in self.records:
            raise NotFoundError(f"job {job_uuid!r} does not exist", "job_uuid")
        return self.records[job_uuid]

    async def jobs(self) -> list[dict]:
        return list(self.records.values())


def adapter_dir(path: Path, base: Path, **config) -> Path:
    path.mkdir(parents=True)
    settings = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": str(base), **config}
    (path / "adapter_config.json").write_text(json.dumps(settings))
    return path


def job(job_uuid: str, checkpoints: dict[int, Path], algorithm: str = "lora", status: str = "completed") -> dict:
    return {
        "job_uuid": job_uuid,
        "kind": "sft",
        "algorithm": algorithm,
        "status": status,
        "checkpoints": [{"iters": i, "path": p.as_uri()} for i, p in checkpoints.items()],
    }


@pytest.fixture()
def setup(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    model = ModelConfig(model_id="chat", path=str(base), aliases=["chat-alias"])
    done = {
        5: adapter_dir(tmp_path / "a/iter-5", base),
        10: adapter_dir(tmp_path / "a/iter-10", base),
    }
    jobs = Jobs(
        {
            "a": job("a", done),
            "wide": job("wide", {3: adapter_dir(tmp_path / "w", base, r=64)}),
            "dora": job("dora", {3: adapter_dir(tmp_path / "d", base, use_dora=True)}, algorithm="dora"),
            "running": job("running", {2: adapter_dir(tmp_path / "r", base)}, status="running"),
        }
    )
    store = MetadataStore(tmp_path / "metadata.db")
    catalog = AdapterCatalog([model], jobs, store, [tmp_path], {"embedder"})
    return catalog, tmp_path, base


def find(catalog: AdapterCatalog, model_id: str):
    return asyncio.run(catalog.find(model_id))


def test_a_job_id_names_its_final_checkpoint_and_any_other_by_step(setup):
    catalog, root, _ = setup
    base, adapter = find(catalog, "chat:a")
    assert base.model_id == "chat" and adapter.path == str(root / "a/iter-10") and adapter.checkpoint_iters == 10
    assert find(catalog, "chat:a:iter-5")[1].path == str(root / "a/iter-5")
    assert find(catalog, "chat-alias:a")[0].model_id == "chat"
    assert find(catalog, "chat:running") is None  # not finished: only its checkpoints are served
    assert find(catalog, "chat:running:iter-2") is not None
    for unknown in ("chat:nope", "chat:a:iter-7", "other:a", "a"):
        assert find(catalog, unknown) is None
    assert adapter_ref(adapter) == adapter_ref(adapter) and adapter_ref(adapter).int_id > 0


def test_what_vllm_cannot_apply_is_a_400_that_says_why(setup):
    catalog, _, _ = setup
    with pytest.raises(InvalidRequestError, match="max_lora_rank=16"):
        find(catalog, "chat:wide")
    assert find(catalog, "chat:dora") is None  # served merged, as a model of its own
    dora = RegisterAdapterRequest(adapter_id="d", job_uuid="dora")
    with pytest.raises(InvalidRequestError, match="DoRA"):
        asyncio.run(catalog.register_adapter(dora))


def test_registered_adapters_persist_and_unregistering_takes_them_off(setup):
    catalog, root, base = setup
    outside = RegisterAdapterRequest(adapter_id="x", adapter_path="/etc")
    with pytest.raises(InvalidRequestError) as error:
        asyncio.run(catalog.register_adapter(outside))
    assert error.value.param == "adapter_path"
    foreign = adapter_dir(root / "foreign", root / "elsewhere")
    with pytest.raises(InvalidRequestError, match="elsewhere"):
        asyncio.run(catalog.register_adapter(RegisterAdapterRequest(adapter_id="f", adapter_path=str(foreign))))
    with pytest.raises(ConflictError):
        asyncio.run(catalog.register_adapter(RegisterAdapterRequest(adapter_id="embedder", job_uuid="a")))

    mine = adapter_dir(root / "mine", base)
    registered = asyncio.run(
        catalog.register_adapter(RegisterAdapterRequest(adapter_id="mine", adapter_path=str(mine)))
    )
    assert registered.base_model == "chat" and registered.source == "registered"
    again = AdapterCatalog(list(catalog.chat.values())[:1], catalog.jobs, catalog.store, [root], set())
    assert find(again, "mine")[1].path == str(mine)  # a new catalog (a restart) finds it in the store
    listed = [a.adapter_id for a in asyncio.run(catalog.list_adapters())]
    assert listed.count("mine") == 1 and "chat:a" in listed and "chat:dora" not in listed

    asyncio.run(catalog.unregister_adapter("mine"))
    asyncio.run(catalog.unregister_adapter("chat:a"))
    assert find(catalog, "mine") is None and find(catalog, "chat:a") is None
    assert "chat:a" not in [a.adapter_id for a in asyncio.run(catalog.list_adapters())]
    with pytest.raises(NotFoundError):
        asyncio.run(catalog.unregister_adapter("mine"))
