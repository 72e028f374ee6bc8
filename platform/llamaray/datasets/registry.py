"""The registry of named datasets in the metadata store, and the checks a dataset passes.

A dataset is registered only after its rows were read and checked, so a registered dataset is
known to be readable and to hold the columns it declares, with values of the declared types;
training and batch jobs can then rely on it without checking again.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from llamaray.api.common import Message
from llamaray.api.datasets import Dataset, DatasetColumnType
from llamaray.errors import ConflictError, InvalidRequestError, NotFoundError
from llamaray.security.ownership import Owners
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage

OWNED = "datasets"  # the storage's folder of files the platform wrote: job outputs, fetched copies

KIND = "dataset"


def check_columns(dataset: Dataset, rows: list[dict[str, Any]], param: str = "dataset.columns") -> None:
    """Every declared column is in every row, with a value of its declared type."""
    if not rows:
        raise InvalidRequestError("the dataset has no rows", "dataset.content_url")
    for name, column_type in dataset.columns.items():
        for i, row in enumerate(rows):
            if name not in row:
                raise InvalidRequestError(f"row {i} has no column {name!r} (it has {sorted(row)})", f"{param}.{name}")
            problem = _type_problem(row[name], column_type)
            if problem:
                raise InvalidRequestError(f"row {i}, column {name!r}: {problem}", f"{param}.{name}")


def _type_problem(value: Any, column_type: DatasetColumnType) -> str | None:
    if column_type is DatasetColumnType.dialog:
        if not isinstance(value, list) or not value:
            return "a dialog is a non-empty list of messages"
        try:
            for message in value:
                Message.model_validate(message)
        except ValidationError as exc:
            return f"not a message: {exc.errors()[0]['msg']}"
    elif column_type in (DatasetColumnType.text, DatasetColumnType.media):
        if not isinstance(value, str):
            return f"expected a string, got {type(value).__name__}"
    elif column_type is DatasetColumnType.number:
        try:
            float(value)
        except (TypeError, ValueError):
            return f"expected a number, got {value!r}"
    return None


def register(store: MetadataStore, dataset_id: str, dataset: Dataset, num_rows: int, param: str = "uuid") -> None:
    try:
        store.create(KIND, dataset_id, {"dataset": dataset.model_dump(mode="json"), "num_rows": num_rows})
    except ConflictError:
        raise ConflictError(f"dataset {dataset_id!r} already exists", param) from None


def registered(store: MetadataStore, dataset_id: str, param: str = "dataset_id") -> Dataset:
    """The dataset, if the request's key may see it (its own, or any for an admin key and the
    platform's own work): wherever a request names a dataset, another key's does not exist."""
    missing = NotFoundError(f"dataset {dataset_id!r} does not exist", param)
    Owners(store).check(KIND, dataset_id, lambda: missing)
    try:
        record = store.get(KIND, dataset_id)
    except NotFoundError:
        raise missing from None
    return Dataset.model_validate(record["dataset"])


def claim(store: MetadataStore, dataset_id: str) -> None:
    """The dataset (or a job's output to come) is the request's key's."""
    Owners(store).claim(KIND, dataset_id)


def check_free(store: MetadataStore, dataset_id: str) -> None:
    """A job's output name is not taken, by anyone (a 409 naming `output_dataset_id` if it is)."""
    try:
        store.get(KIND, dataset_id)
    except NotFoundError:
        return
    raise ConflictError(f"dataset {dataset_id!r} already exists; name another output_dataset_id", "output_dataset_id")


def unregister(store: MetadataStore, dataset_id: str) -> None:
    registered(store, dataset_id)  # another key's is not there to delete
    try:
        store.delete(KIND, dataset_id)
    except NotFoundError:
        raise NotFoundError(f"dataset {dataset_id!r} does not exist", "dataset_id") from None


def delete_dataset(store: MetadataStore, dataset_id: str, storage: SharedStorage) -> None:
    """Unregisters the dataset and removes the file the platform wrote for it under the storage's
    `datasets/` (a job's output, a fetched copy no other dataset names); a file the user named
    stays theirs."""
    url = registered(store, dataset_id).content_url
    unregister(store, dataset_id)
    path = storage.holds(url)
    if path is None or not path.startswith(storage.path(OWNED) + "/"):
        return
    if any(record["dataset"]["content_url"] == url for _, record in store.list(KIND)):
        return  # the same fetched bytes, registered under another id too
    storage.remove_uri(url)
