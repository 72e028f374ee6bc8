"""The Datasets API: `create` reads the data once and registers it only if every row checks."""

from __future__ import annotations

from pathlib import Path

from llamaray.api.datasets import CreateDatasetRequest, Dataset
from llamaray.datasets.readers import read_rows
from llamaray.datasets.registry import check_columns, register, registered, unregister
from llamaray.store.metadata import MetadataStore


class DatasetsService:
    def __init__(self, store: MetadataStore, roots: list[Path]) -> None:
        self.store = store
        self.roots = roots

    async def create_dataset(self, request: CreateDatasetRequest) -> None:
        rows = read_rows(request.dataset.content_url, self.roots, "dataset.content_url")
        check_columns(request.dataset, rows)
        register(self.store, request.uuid, request.dataset, len(rows))

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return registered(self.store, dataset_id)

    async def delete_dataset(self, dataset_id: str) -> None:
        unregister(self.store, dataset_id)
