"""`MemoryServer`: the Serve deployment that owns the Milvus client and answers the MemoryBanks
API (Milvus Lite allows one process per database file, so it has one replica unless a Milvus
server is named).

The replica exposes `MemoryService`'s own methods under the Protocol's names, so the gateway's
client calls each one on the handle by name and nothing is dispatched by a string argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llamaray.api.memory_banks import MemoryBanks
from llamaray.api.protocols import protocol_methods
from llamaray.config import MemorySettings
from llamaray.memory.embeddings import EmbeddingModel
from llamaray.memory.index import MilvusIndex
from llamaray.memory.service import MemoryService
from llamaray.store.metadata import MetadataStore


class MemoryServer:
    def __init__(self, data_dir: str, metadata_url: str | None, settings: dict[str, Any], embedder) -> None:
        import torch

        memory = MemorySettings.model_validate(settings)
        uri = memory.milvus_uri or str(Path(data_dir) / "milvus.db")
        self.embedder = embedder
        # The embedding model here too, for queries: one text costs less to embed in this process
        # than a hop to the embedding deployment and back. Writes' chunks still go there, batched.
        # It gets the embedder's threads: a query's latency is one forward pass.
        torch.set_num_threads(memory.embedding_threads)
        self.query_model = EmbeddingModel(memory.embedding_model)

        async def embed(texts: list[str]) -> np.ndarray:
            return await self.embedder.embed.remote(texts)

        def embed_query(text: str) -> np.ndarray:
            return self.query_model.embed([text])[0]

        self.service = MemoryService(
            MetadataStore.of_platform(data_dir, metadata_url),
            MilvusIndex(uri, memory.milvus_token),
            self.query_model.tokenizer,
            embed,
            memory,
            embed_query,
        )
        self.service.recover(only_writer=memory.memory_replicas == 1)
        for name in protocol_methods(MemoryBanks):  # Serve finds a handle's method by name here
            setattr(self, name, getattr(self.service, name))
