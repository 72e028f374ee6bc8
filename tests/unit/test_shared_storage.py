"""Shared storage (`storage_path`) on a directory and on an object store (S3 through pyarrow, here
moto's S3 server): what one node publishes another reads, nothing a request names leads out of
it, and storage a node does not share is refused before a job writes anything to it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from llamaray.api.datasets import DatasetColumnType
from llamaray.config import ModelConfig, OutboundSettings, PlatformConfig
from llamaray.datasets.output import DatasetOutput
from llamaray.datasets.readers import read_rows
from llamaray.datasets.registry import registered
from llamaray.datasets.service import DatasetsService
from llamaray.engines.vllm_requests import lora_request
from llamaray.errors import InvalidRequestError
from llamaray.inference.adapters import AdapterCatalog, adapter_ref
from llamaray.jobs import retention
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage, StorageError
from tests.servers import s3_storage_path

from .test_adapters import Jobs, adapter_dir, job


@pytest.fixture(params=["directory", "s3"])
def storage(request, tmp_path) -> SharedStorage:
    """Storage as one node sees it; its data dir (staging, cache) is that node's own."""
    if request.param == "directory":
        return SharedStorage(str(tmp_path / "shared"), tmp_path / "node-a")
    path = s3_storage_path(request.getfixturevalue("s3_endpoint"), "llamaray", uuid.uuid4().hex)
    return SharedStorage(path, tmp_path / "node-a")


def other_node(storage: SharedStorage, tmp_path: Path) -> SharedStorage:
    """The same storage seen from another node: a data dir (and cache) of its own."""
    where = storage.root if storage.local else f"s3://{storage.root}?{storage.query}"
    return SharedStorage(where, tmp_path / "node-b")


def test_a_directory_one_node_publishes_another_reads_whole(storage, tmp_path):
    work = storage.workdir("jobs", "j1", "checkpoints", "iter-4")
    work.mkdir(parents=True)
    (work / "adapter_config.json").write_text('{"r": 8}')
    (work / "weights").mkdir()
    (work / "weights" / "part.bin").write_bytes(b"\x00\x01" * 1000)
    uri = storage.publish(work, "jobs", "j1", "checkpoints", "iter-4")
    assert uri.startswith("s3://llamaray/" if not storage.local else "file:///")
    copy = other_node(storage, tmp_path).local_copy(uri)
    assert json.loads((copy / "adapter_config.json").read_text()) == {"r": 8}
    assert (copy / "weights" / "part.bin").read_bytes() == b"\x00\x01" * 1000
    if not storage.local:  # a copy in node b's own cache, not node a's staging
        assert copy.is_relative_to(tmp_path / "node-b") and work.is_relative_to(tmp_path / "node-a")
        # an engine holds only the URI with the storage's options; it downloads once
        ref = adapter_ref_for(storage.with_options(uri))
        assert (Path(lora_request(ref).lora_path) / "adapter_config.json").is_file()


def adapter_ref_for(path: str):
    from llamaray.engines.protocol import AdapterRef

    return AdapterRef("chat:j1", path, 7)


def test_nothing_a_request_names_leads_out_of_the_storage(storage):
    for name in ("..", ".hidden", "a/b", "", "x\x00"):
        with pytest.raises(ValueError):
            storage.path("datasets", name)
    outside = ["file:///etc/passwd", "s3://other-bucket/x", "https://example.com/x"]
    outside += [storage.uri("datasets") + "/../../x", storage.uri() + "-sibling/x"]
    for uri in outside:
        assert storage.holds(uri) is None, uri
    if not storage.local:
        with pytest.raises(InvalidRequestError, match="outside the platform's storage_path"):
            read_rows("s3://other-bucket/secret.jsonl", [], "content_url", None, storage)


def test_a_data_jobs_output_is_read_by_another_node_and_removed_with_its_dataset(storage, tmp_path):
    store = MetadataStore(tmp_path / "metadata.db")
    output = DatasetOutput(store, storage, "made", "jsonl")
    output.write([{"text": "row one"}, {"text": "row two"}])
    dataset = output.commit(store, {"text": DatasetColumnType.text}, {})
    assert registered(store, "made").content_url == dataset.content_url == storage.uri("datasets", "made.jsonl")
    reader = other_node(storage, tmp_path)
    rows = read_rows(dataset.content_url, [Path(reader.root)] if reader.local else [], "content_url", None, reader)
    assert rows == [{"text": "row one"}, {"text": "row two"}]
    service = DatasetsService(store, [], reader, OutboundSettings())
    asyncio.run(service.delete_dataset("made"))
    assert not storage.exists(dataset.content_url)
    assert not list(storage.workdir("datasets").glob("*.partial"))


def test_storage_a_node_does_not_share_fails_the_job_before_it_writes(storage, tmp_path):
    token = storage.mark("jobs", "j2")
    other_node(storage, tmp_path).check_mark(token, "jobs", "j2")  # shared: seen
    elsewhere = SharedStorage(str(tmp_path / "node-b-own-disk"), tmp_path / "node-b")
    with pytest.raises(StorageError, match="is not shared storage"):
        elsewhere.check_mark(token, "jobs", "j2")


def test_a_job_adapter_on_the_object_store_is_served_from_a_downloaded_copy(storage, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    work = adapter_dir(storage.workdir("jobs", "j3", "checkpoints", "iter-6"), base)
    uri = storage.publish(work, "jobs", "j3", "checkpoints", "iter-6")
    model = ModelConfig(model_id="chat", path=str(base))
    store = MetadataStore(tmp_path / "metadata.db")
    gateway = other_node(storage, tmp_path)
    catalog = AdapterCatalog([model], Jobs({"j3": job_at("j3", {6: uri})}), store, [], set(), gateway)
    _, adapter = asyncio.run(catalog.find("chat:j3"))
    assert adapter.rank == 8 and adapter.checkpoint_iters == 6
    assert (Path(lora_request(adapter_ref(adapter)).lora_path) / "adapter_config.json").is_file()
    # Retention removes the job's files from the storage too.
    retention.remove_files(tmp_path / "node-b", gateway, "j3")
    assert not storage.exists(uri)
    catalog._found.clear()
    assert asyncio.run(catalog.find("chat:j3")) is None


def job_at(job_uuid: str, checkpoints: dict[int, str]) -> dict:
    record = job(job_uuid, {})
    record["checkpoints"] = [{"iters": i, "path": p} for i, p in checkpoints.items()]
    return record


def test_the_config_takes_paths_and_pyarrow_uris_only(tmp_path):
    models = [{"model_id": "m", "path": "/m"}]
    shared = PlatformConfig(models=models, storage_path="shared").resolved(tmp_path)
    assert shared.storage_path == str(tmp_path / "shared") and str(tmp_path / "shared") in shared.dataset_roots
    assert PlatformConfig(models=models, storage_path="s3://b/k?endpoint_override=h:9000").storage_path
    with pytest.raises(ValueError, match="scheme"):
        PlatformConfig(models=models, storage_path="ftp://host/x")


def test_a_worker_on_another_node_resumes_from_the_trainer_state_every_rank_published(storage, tmp_path):
    """What Ray Train's restarted worker reads (`training.recipe`): the newest trainer state
    that was published whole, downloaded into its own output dir."""
    from transformers import TrainerState, TrainingArguments

    from llamaray.training.plan import TrainingPlan, Workers
    from llamaray.training.recipe import ProgressCallback, _last_trainer_state

    if storage.local:
        pytest.skip("a shared directory is read in place: the trainer finds its state itself")
    plan = TrainingPlan(
        job_uuid="j4",
        kind="sft",
        algorithm="lora",
        model_path="/m",
        optimizer="adamw",
        trainer_args={"max_steps": 8},
        deepspeed={"zero_optimization": {"stage": 0}},
        workers=Workers(num_workers=1, cpus_per_worker=1, gpus_per_worker=0),
        checkpoint_dir=str(storage.workdir("jobs", "j4", "checkpoints")),
        storage_path=f"s3://{storage.root}?{storage.query}",
        data_dir=str(tmp_path / "node-a"),
    )
    output_dir = storage.workdir("jobs", "j4", "trainer")
    callback = ProgressCallback(plan, None, None, storage)
    for step in (2, 4):
        state_dir = output_dir / f"checkpoint-{step}"
        state_dir.mkdir(parents=True)
        (state_dir / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        callback.on_save(
            TrainingArguments(output_dir=str(output_dir), report_to=[]), TrainerState(global_step=step), None
        )
    # A rank that died mid-upload at step 6: no `published` mark, never resumed from.
    storage.write_bytes(b"{}", "jobs", "j4", "trainer", "checkpoint-6", "trainer_state.json")
    elsewhere = other_node(storage, tmp_path)
    resumed = _last_trainer_state(str(tmp_path / "node-b" / "trainer"), elsewhere, "j4")
    assert resumed == tmp_path / "node-b" / "trainer" / "checkpoint-4"
    assert json.loads((resumed / "trainer_state.json").read_text()) == {"global_step": 4}


def test_dpo_names_an_adapter_on_the_object_store_by_its_uri(storage, tmp_path):
    """DPO's `finetuned_model` is a URL: on an object store, the checkpoint's URI. The workers
    get it with the storage's options and download it on their own nodes."""
    from llamaray.training.models import resolve_model

    if storage.local:
        pytest.skip("a shared directory's checkpoints are file:// URLs, read in place")
    base = tmp_path / "base"
    base.mkdir()
    uri = storage.publish(adapter_dir(tmp_path / "iter-3", base), "jobs", "j5", "checkpoints", "iter-3")
    platform = PlatformConfig(
        data_dir=str(tmp_path / "node-b"),
        storage_path=f"s3://{storage.root}?{storage.query}",
        models=[{"model_id": "chat", "path": str(base)}],
    )
    weights = resolve_model(uri, platform, "finetuned_model")
    assert weights.model_path == str(base) and weights.adapter_path == storage.with_options(uri)
    with pytest.raises(InvalidRequestError, match="outside the platform's storage_path"):
        resolve_model("s3://someone-elses/adapter", platform, "finetuned_model")


def test_a_jobs_config_written_by_a_gateway_is_read_by_a_driver_on_another_node(storage, tmp_path):
    """`RayJobs.submit` writes `jobs/<uuid>/job.yaml` into the storage; the driver, wherever Ray
    Jobs starts it, reads it by the path or URI in its `--config`."""
    from llamaray.store.storage import read_uri

    uri = storage.write_bytes(b"request: {}\n", "jobs", "j6", "job.yaml")
    where = storage.path("jobs", "j6", "job.yaml") if storage.local else storage.with_options(uri)
    assert read_uri(where) == b"request: {}\n"
