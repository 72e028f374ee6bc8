"""A data job's output: written beside its final name, registered only when the job succeeded.

Rows go to `<storage>/datasets/<id>.<format>.<writer>.partial` as they come out of the
pipeline (a file of this writer's own: two jobs naming one output never share it); the file is
linked to its final name (uploaded, on an object store) and the dataset registered at the end,
and removed on any failure, so a failed or stopped job never leaves a dataset (or half of one)
that training could read.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from llamaray.api.datasets import Dataset, DatasetColumnType
from llamaray.datasets.registry import OWNED, check_free, register
from llamaray.errors import InvalidRequestError
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage


class DatasetOutput:
    def __init__(self, store: MetadataStore, storage: SharedStorage, dataset_id: str, output_format: str) -> None:
        check_free(store, dataset_id)  # before any work: the name is taken
        self.dataset_id = dataset_id
        self.format = output_format
        self.storage = storage
        self.name = f"{dataset_id}.{output_format}"
        try:
            storage.path(OWNED, self.name)
        except ValueError:  # the API's alphabet already keeps ids to names
            raise InvalidRequestError(f"{dataset_id!r} is not a dataset name", "output_dataset_id") from None
        root = storage.workdir(OWNED)  # the shared folder itself, or this node's staging for an object store
        self.path = root / self.name
        self.partial = root / f"{self.name}.{uuid.uuid4().hex[:12]}.partial"
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.num_rows = 0
        self._jsonl = self.partial.open("w") if output_format == "jsonl" else None
        self._rows: list[dict[str, Any]] = []  # Parquet: one table at the end, one schema for all rows

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self._jsonl is not None:
            self._jsonl.write("".join(json.dumps(row) + "\n" for row in rows))
        else:
            self._rows.extend(rows)
        self.num_rows += len(rows)

    def commit(self, store: MetadataStore, columns: dict[str, DatasetColumnType], metadata: dict[str, Any]) -> Dataset:
        check_free(store, self.dataset_id)  # before the rename: the file may be another dataset's
        if self._jsonl is not None:
            self._jsonl.close()
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(self._rows), self.partial)
        if self.storage.local:
            url = self._rename()
        else:  # an object store: one upload, whole (a file left by a dead job is not a dataset)
            url = self.storage.publish(self.partial, OWNED, self.name)
            self.partial.unlink()
        dataset = Dataset(columns=columns, content_url=url, metadata=metadata)
        try:
            register(store, self.dataset_id, dataset, self.num_rows, "output_dataset_id")
        except BaseException:
            self.storage.remove_uri(url)
            raise
        return dataset

    def _rename(self) -> str:
        try:  # the final name, only if no other job's output has it
            os.link(self.partial, self.path)
            self.partial.unlink()
        except FileExistsError:  # left by a job that died before registering it: not a dataset
            os.replace(self.partial, self.path)
        return self.path.resolve().as_uri()

    def discard(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        self.partial.unlink(missing_ok=True)
