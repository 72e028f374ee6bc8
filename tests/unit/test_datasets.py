"""Dataset readers and column checks, on files written here."""

import base64
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llamaray.api.datasets import Dataset
from llamaray.datasets.readers import read_rows
from llamaray.datasets.registry import check_columns
from llamaray.errors import InvalidRequestError, NotFoundError

ROWS = [
    {
        "dialog": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "text": "a",
        "score": 1.5,
    },
    {"dialog": [{"role": "user", "content": "bye"}], "text": "b", "score": 2},
]


def write_all(tmp_path):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    pq.write_table(
        pa.Table.from_pylist([{"text": r["text"], "score": float(r["score"])} for r in ROWS]), tmp_path / "d.parquet"
    )
    (tmp_path / "d.csv").write_text("text,score\na,1.5\nb,2\n")


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.parquet", "d.csv"])
def test_each_file_format_reads_the_same_rows(tmp_path, name):
    write_all(tmp_path)
    rows = read_rows(f"file://{tmp_path / name}", [tmp_path])
    assert [r["text"] for r in rows] == ["a", "b"]
    check_columns(Dataset(columns={"text": "text", "score": "number"}, content_url=f"file://{tmp_path / name}"), rows)


def test_inline_data_urls_plain_and_base64():
    jsonl = "\n".join(json.dumps(r) for r in ROWS)
    assert read_rows("data:application/jsonl," + jsonl, []) == ROWS
    assert read_rows("data:application/jsonl;base64," + base64.b64encode(jsonl.encode()).decode(), []) == ROWS
    with pytest.raises(InvalidRequestError):
        read_rows("data:application/jsonl;base64,@@@", [])


def test_files_outside_the_roots_are_refused(tmp_path):
    write_all(tmp_path)
    with pytest.raises(InvalidRequestError, match="outside the data roots"):
        read_rows(f"file://{tmp_path / 'd.jsonl'}", [tmp_path / "elsewhere"])
    with pytest.raises(InvalidRequestError, match="outside the data roots"):
        read_rows(f"file://{tmp_path}/../../etc/passwd", [tmp_path])
    with pytest.raises(NotFoundError):
        read_rows(f"file://{tmp_path / 'missing.jsonl'}", [tmp_path])


def test_column_types_are_checked_by_name():
    dataset = Dataset(columns={"dialog": "dialog", "text": "text", "score": "number"}, content_url="data:,x")
    check_columns(dataset, ROWS)
    with pytest.raises(InvalidRequestError) as missing:
        check_columns(Dataset(columns={"prompt": "text"}, content_url="data:,x"), ROWS)
    assert missing.value.param == "dataset.columns.prompt"
    with pytest.raises(InvalidRequestError) as wrong:
        check_columns(Dataset(columns={"text": "dialog"}, content_url="data:,x"), ROWS)
    assert wrong.value.param == "dataset.columns.text"
    with pytest.raises(InvalidRequestError):
        check_columns(
            Dataset(columns={"dialog": "dialog"}, content_url="data:,x"),
            [{"dialog": [{"role": "robot", "content": "x"}]}],
        )
