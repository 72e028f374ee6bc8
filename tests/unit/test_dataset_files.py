"""The files behind datasets: a job's output never shared or half there, and removed with it."""

import asyncio
import json

import pytest

from llamaray.api.datasets import DatasetColumnType
from llamaray.config import OutboundSettings
from llamaray.datasets.output import DatasetOutput
from llamaray.datasets.registry import register, registered
from llamaray.datasets.service import DatasetsService
from llamaray.errors import ConflictError
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage

COLUMNS = {"text": DatasetColumnType.text}


def test_two_jobs_naming_one_output_never_mix_their_rows(tmp_path):
    store = MetadataStore(tmp_path / "metadata.db")
    first = DatasetOutput(store, SharedStorage(str(tmp_path), tmp_path), "out", "jsonl")
    second = DatasetOutput(store, SharedStorage(str(tmp_path), tmp_path), "out", "jsonl")
    assert first.partial != second.partial
    first.write([{"text": "first"}] * 3)
    second.write([{"text": "second"}] * 5)
    first.commit(store, COLUMNS, {})
    with pytest.raises(ConflictError):
        second.commit(store, COLUMNS, {})
    rows = [json.loads(line) for line in (tmp_path / "datasets" / "out.jsonl").read_text().splitlines()]
    assert rows == [{"text": "first"}] * 3
    assert registered(store, "out").content_url.endswith("/datasets/out.jsonl")


def test_deleting_a_dataset_removes_the_file_the_platform_wrote_but_not_a_users(tmp_path):
    store = MetadataStore(tmp_path / "metadata.db")
    output = DatasetOutput(store, SharedStorage(str(tmp_path), tmp_path), "made", "jsonl")
    output.write([{"text": "x"}])
    output.commit(store, COLUMNS, {})
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"text": "y"}\n')
    user = registered(store, "made").model_copy(update={"content_url": mine.as_uri()})
    register(store, "users", user, 1)
    service = DatasetsService(store, [tmp_path], SharedStorage(str(tmp_path), tmp_path), OutboundSettings())
    asyncio.run(service.delete_dataset("made"))
    asyncio.run(service.delete_dataset("users"))
    assert not (tmp_path / "datasets" / "made.jsonl").exists() and mine.exists()
    assert not list((tmp_path / "datasets").glob("*.partial"))
