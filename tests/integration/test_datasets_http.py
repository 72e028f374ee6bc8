"""The Datasets routes over real HTTP: persisted in the metadata store, checked on create."""

from __future__ import annotations

import json

import pytest


def jsonl(rows) -> str:
    return "\n".join(json.dumps(r) for r in rows)


ROWS = [
    {"dialog": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}], "source": "test"}
    for i in range(3)
]


def test_create_get_delete(client, dataset_dir):
    path = dataset_dir / "sft.jsonl"
    path.write_text(jsonl(ROWS))
    dataset = {
        "columns": {"dialog": "dialog", "source": "text"},
        "content_url": f"file://{path}",
        "metadata": {"split": "train"},
    }
    assert client.post("/datasets/create", json={"uuid": "ds-1", "dataset": dataset}).status_code == 200
    assert client.get("/datasets/get", params={"dataset_id": "ds-1"}).json() == dataset
    duplicate = client.post("/datasets/create", json={"uuid": "ds-1", "dataset": dataset})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["param"] == "uuid"
    assert client.delete("/datasets/delete", params={"dataset_id": "ds-1"}).status_code == 200
    missing = client.get("/datasets/get", params={"dataset_id": "ds-1"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "dataset_id"
    assert client.delete("/datasets/delete", params={"dataset_id": "ds-1"}).status_code == 404


def test_inline_data_url(client):
    dataset = {"columns": {"dialog": "dialog"}, "content_url": "data:application/jsonl," + jsonl(ROWS)}
    assert client.post("/datasets/create", json={"uuid": "ds-inline", "dataset": dataset}).status_code == 200
    assert client.get("/datasets/get", params={"dataset_id": "ds-inline"}).json()["columns"] == {"dialog": "dialog"}


@pytest.mark.parametrize(
    "dataset, status, param",
    [
        (
            {"columns": {"prompt": "text"}, "content_url": "data:application/jsonl," + jsonl(ROWS)},
            400,
            "dataset.columns.prompt",
        ),
        (
            {"columns": {"source": "dialog"}, "content_url": "data:application/jsonl," + jsonl(ROWS)},
            400,
            "dataset.columns.source",
        ),
        ({"columns": {"dialog": "dialog"}, "content_url": "file:///etc/passwd"}, 400, "dataset.content_url"),
        ({"columns": {"dialog": "dialog"}, "content_url": "ftp://example.org/x.jsonl"}, 422, "dataset.content_url"),
        ({"columns": {"dialog": "sound"}, "content_url": "data:,{}"}, 422, "dataset.columns.dialog"),
    ],
)
def test_bad_datasets_are_refused_by_field(client, dataset, status, param):
    response = client.post("/datasets/create", json={"uuid": "ds-bad", "dataset": dataset})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert client.get("/datasets/get", params={"dataset_id": "ds-bad"}).status_code == 404


def test_missing_file_is_a_404(client, dataset_dir):
    dataset = {"columns": {"dialog": "dialog"}, "content_url": f"file://{dataset_dir / 'nope.jsonl'}"}
    assert client.post("/datasets/create", json={"uuid": "ds-missing", "dataset": dataset}).status_code == 404
