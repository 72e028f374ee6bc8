"""`EmbeddingServer`: the embedding model in Ray Serve replicas.

It batches concurrent requests (`serve.batch`), since one forward pass over 64 texts costs
little more than over one on these CPUs; its replicas autoscale like the LLM servers.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from llamaray.memory.embeddings import EmbeddingModel


class EmbeddingServer:
    """Serve deployment wrapping `EmbeddingModel`; `embed` takes one list of texts per call."""

    def __init__(self, name: str, threads: int = 1, batch_size: int = 64) -> None:
        import torch

        torch.set_num_threads(threads)  # by default one core per replica: replicas scale it out
        self.model = EmbeddingModel(name, batch_size)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await self._embed_batched(texts)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _embed_batched(self, requests: list[list[str]]) -> list[np.ndarray]:
        flat = [text for texts in requests for text in texts]
        vectors = self.model.embed(flat)
        answers, start = [], 0
        for texts in requests:
            answers.append(vectors[start : start + len(texts)])
            start += len(texts)
        return answers

    def count_tokens(self, texts: list[str]) -> int:
        return self.model.count_tokens(texts)

    def decode(self, token_lists: list[list[int]]) -> list[str]:
        return self.model.decode(token_lists)
