"""Rows out of a dataset's `content_url`: `file://` (JSONL, JSON, Parquet, CSV, or a directory
a Hugging Face dataset was saved to with `save_to_disk`), `data:`
(inline JSONL, plain or base64), `https://` for machines that reach the internet, and the
platform's own object store (`s3://`, `gs://` under `storage_path`: what data jobs wrote there).

A `file://` URL must resolve inside one of the configured data roots, so a request can never
make the platform read an arbitrary file of the host; an `https://` one is fetched only from a
public address (`llamaray.security.outbound`).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import urllib.parse
from pathlib import Path
from typing import Any

from llamaray.config import OutboundSettings
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.security.outbound import fetch_public
from llamaray.store.storage import SharedStorage, is_remote

FORMATS = (".jsonl", ".json", ".parquet", ".csv")


def read_rows(
    url: str,
    roots: list[Path],
    param: str = "content_url",
    outbound: OutboundSettings | None = None,
    storage: SharedStorage | None = None,
) -> list[dict[str, Any]]:
    if url.startswith("file://") and (directory := path_inside(url, roots, param)).is_dir():
        return _saved_dataset_rows(directory, param)
    payload, suffix = read_payload(url, roots, param, outbound, storage)
    return parse_payload(payload, suffix, param)


def _saved_dataset_rows(directory: Path, param: str) -> list[dict[str, Any]]:
    """A Hugging Face dataset written by `save_to_disk` (a `DatasetDict`: its `train` split)."""
    if not any((directory / name).is_file() for name in ("state.json", "dataset_dict.json")):
        raise InvalidRequestError(
            f"{directory} is a directory but not a dataset saved by Hugging Face datasets' save_to_disk", param
        )
    from datasets import DatasetDict, load_from_disk

    saved = load_from_disk(str(directory))
    if isinstance(saved, DatasetDict):
        if "train" not in saved:
            raise InvalidRequestError(f"the saved DatasetDict has no `train` split (it has {list(saved)})", param)
        saved = saved["train"]
    return saved.to_list()


def read_payload(
    url: str,
    roots: list[Path],
    param: str = "content_url",
    outbound: OutboundSettings | None = None,
    storage: SharedStorage | None = None,
) -> tuple[bytes, str]:
    """The bytes a `content_url` names and the file type they are in. An `http(s)` URL is
    fetched under the outbound policy (public hosts only, by default); an object store URL is
    read only inside the platform's own storage."""
    if url.startswith("data:"):
        return _data_payload(url, param), ".jsonl"
    if url.startswith("file://"):
        path = _local_path(url, roots, param)
        return path.read_bytes(), path.suffix.lower()
    if url.startswith(("https://", "http://")):
        suffix = Path(urllib.parse.urlparse(url).path).suffix.lower()
        return fetch_public(url, outbound or OutboundSettings(), param), suffix or ".jsonl"
    if storage is not None and is_remote(url) and not storage.local:
        if storage.holds(url) is None:
            raise InvalidRequestError(f"{url!r} is outside the platform's storage_path ({storage.uri()})", param)
        try:
            payload = storage.read_bytes(url)
        except FileNotFoundError:
            raise NotFoundError(f"no file at {url}", param) from None
        return payload, Path(url.partition("?")[0]).suffix.lower() or ".jsonl"
    raise InvalidRequestError(f"unsupported URL scheme in {url!r}", param)


def _data_payload(url: str, param: str) -> bytes:
    header, _, data = url[len("data:") :].partition(",")
    if not data:
        raise InvalidRequestError("the data: URL carries no content", param)
    if header.endswith(";base64"):
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise InvalidRequestError("the data: URL is not valid base64", param) from None
    return urllib.parse.unquote(data).encode()


def path_inside(url: str, roots: list[Path], param: str) -> Path:
    """The local path a `file://` URL (or an absolute path) names, refused unless it resolves
    inside one of `roots`: links and `..` cannot lead a request out of them."""
    if url.startswith("file:"):
        parts = urllib.parse.urlparse(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidRequestError(f"a file:// URL names no host, not {parts.netloc!r}", param)
        raw = urllib.parse.unquote(parts.path)
    else:
        raw = url
    if "\x00" in raw:
        raise InvalidRequestError("a path with a NUL byte in it is refused", param)
    if not raw.startswith("/"):
        raise InvalidRequestError(f"{url!r} is neither a file:// URL nor an absolute path", param)
    path = Path(raw).resolve()
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        raise InvalidRequestError(f"{url!r} is outside the data roots this platform may read (dataset_roots)", param)
    return path


def _local_path(url: str, roots: list[Path], param: str) -> Path:
    path = path_inside(url, roots, param)
    if not path.is_file():
        raise NotFoundError(f"no file at {path}", param)
    return path


def parse_payload(payload: bytes, suffix: str, param: str) -> list[dict[str, Any]]:
    if suffix not in FORMATS:
        raise InvalidRequestError(f"unsupported file type {suffix!r}; expected one of {', '.join(FORMATS)}", param)
    try:
        if suffix == ".jsonl":
            return _parse_jsonl(payload, param)
        if suffix == ".json":
            data = json.loads(payload)
            rows = data.get("data") if isinstance(data, dict) else data
            if not isinstance(rows, list):
                raise InvalidRequestError('a JSON dataset is a list of rows (or {"data": [...]})', param)
            return _objects(rows, param)
        if suffix == ".csv":
            return _parse_csv(payload, param)
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(payload)).to_pylist()
    except (UnicodeDecodeError, json.JSONDecodeError, OSError, ValueError, csv.Error) as exc:
        if isinstance(exc, InvalidRequestError):
            raise
        raise InvalidRequestError(f"cannot parse the dataset as {suffix}: {exc}", param) from None
    except RecursionError:
        raise InvalidRequestError(f"cannot parse the dataset as {suffix}: nested too deeply", param) from None


def _parse_csv(payload: bytes, param: str) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header; a row with more fields than the header is an error
    (`csv.DictReader` would keep the extras under a `None` key)."""
    rows = []
    for number, row in enumerate(csv.DictReader(io.StringIO(payload.decode("utf-8"))), start=2):
        if None in row:
            raise InvalidRequestError(f"CSV line {number} has more fields than the header", param)
        rows.append(row)
    return rows


def _parse_jsonl(payload: bytes, param: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(payload.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(f"line {number} is not JSON: {exc}", param) from None
    return _objects(rows, param)


def _objects(rows: list, param: str) -> list[dict[str, Any]]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidRequestError(f"row {i} is not a JSON object", param)
    return rows
