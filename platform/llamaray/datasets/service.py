"""The Datasets API: `create` reads the data once and registers it only if every row checks.

A dataset fetched from the web is registered as the copy that was checked (in the shared
storage, `datasets/fetched/`, named by its content's hash): a job later reads those bytes, not
whatever the URL serves then, and no job driver fetches from the web again.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from llamaray.api.datasets import CreateDatasetRequest, Dataset
from llamaray.config import OutboundSettings
from llamaray.datasets.readers import parse_payload, read_payload
from llamaray.datasets.registry import OWNED, check_columns, claim, delete_dataset, register, registered
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage


class DatasetsService:
    def __init__(
        self, store: MetadataStore, roots: list[Path], storage: SharedStorage, outbound: OutboundSettings
    ) -> None:
        self.store = store
        self.roots = roots
        self.storage = storage  # where the platform's own files are: job outputs, fetched copies
        self.outbound = outbound

    async def create_dataset(self, request: CreateDatasetRequest) -> None:
        param = "dataset.content_url"
        url = request.dataset.content_url
        # Fetching, parsing and SQLite all run off the gateway's event loop (health checks share it).
        payload, suffix = await asyncio.to_thread(read_payload, url, self.roots, param, self.outbound, self.storage)
        rows = await asyncio.to_thread(parse_payload, payload, suffix, param)
        check_columns(request.dataset, rows)
        dataset = request.dataset
        if url.startswith(("https://", "http://")):
            copy = await asyncio.to_thread(self._keep, payload, suffix)
            metadata = {**dataset.metadata, "fetched_from": url}
            dataset = dataset.model_copy(update={"content_url": copy, "metadata": metadata})
        await asyncio.to_thread(register, self.store, request.uuid, dataset, len(rows))
        # The request's key's: another key sees no such dataset. `claim` reads the caller from a
        # context variable, which `to_thread` carries over.
        await asyncio.to_thread(claim, self.store, request.uuid)

    def _keep(self, payload: bytes, suffix: str) -> str:
        name = f"{hashlib.sha256(payload).hexdigest()}{suffix}"
        uri = self.storage.uri(OWNED, "fetched", name)
        return uri if self.storage.exists(uri) else self.storage.write_bytes(payload, OWNED, "fetched", name)

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return await asyncio.to_thread(registered, self.store, dataset_id)

    async def delete_dataset(self, dataset_id: str) -> None:
        """Unregisters the dataset and removes the file the platform wrote for it (a job's output,
        a fetched copy no other dataset names); a file the user named stays theirs."""
        await asyncio.to_thread(self._delete, dataset_id)

    def _delete(self, dataset_id: str) -> None:
        delete_dataset(self.store, dataset_id, self.storage)
