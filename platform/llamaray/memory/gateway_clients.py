"""What the gateway holds for memory: thin clients over the two memory deployments' handles."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from llamaray.api import openai as oai
from llamaray.api.memory_banks import MemoryBank, MemoryBankDocument, QueryMemoryBankRequest, QueryMemoryBankResponse
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.memory.embeddings import DEFAULT_MODEL

MAX_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request


class MemoryBanksClient:
    """The MemoryBanks Protocol, answered by the `MemoryServer` deployment."""

    def __init__(self, handle) -> None:
        self.handle = handle

    async def _call(self, method: str, *args: Any) -> Any:
        return await self.handle.call.remote(method, *args)

    async def create_memory_bank(
        self, bank_uuid: str, bank_name: str, documents: list[MemoryBankDocument], chunking: dict[str, int] | None = None
    ) -> None:
        await self._call("create_memory_bank", bank_uuid, bank_name, documents, chunking)

    async def get_memory_banks(self) -> list[MemoryBank]:
        return await self._call("get_memory_banks")

    async def remove_memory_bank(self, bank_uuid: str) -> str:
        return await self._call("remove_memory_bank", bank_uuid)

    async def post_insert_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        await self._call("post_insert_memory_documents", bank_uuid, documents)

    async def post_update_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        await self._call("post_update_memory_documents", bank_uuid, documents)

    async def post_get_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> list[MemoryBankDocument]:
        return await self._call("post_get_memory_documents", bank_uuid, document_uuids)

    async def remove_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> None:
        await self._call("remove_memory_documents", bank_uuid, document_uuids)

    async def query_memory_bank(self, request: QueryMemoryBankRequest) -> QueryMemoryBankResponse:
        return await self._call("query_memory_bank", request)


class EmbeddingsClient:
    """OpenAI's `/v1/embeddings` over the `EmbeddingServer` deployment."""

    def __init__(self, handle, model: str) -> None:
        self.handle = handle
        self.model = model
        self.ids = {model, f"sentence-transformers/{model}"} if model == DEFAULT_MODEL else {model}

    async def embeddings(self, request: oai.EmbeddingRequest) -> oai.EmbeddingResponse:
        if request.model not in self.ids:
            raise NotFoundError(f"embedding model {request.model!r} is not served (served: {', '.join(sorted(self.ids))})", "model")
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not texts or len(texts) > MAX_INPUTS or any(not text for text in texts):
            raise InvalidRequestError(f"input must be 1 to {MAX_INPUTS} non-empty strings", "input")
        vectors = await self.handle.embed.remote(texts)
        if request.dimensions is not None and request.dimensions != len(vectors[0]):
            raise InvalidRequestError(f"{self.model} makes {len(vectors[0])}-dimensional embeddings", "dimensions")
        tokens = await self.handle.count_tokens.remote(texts)
        data = [oai.Embedding(index=i, embedding=_encoded(v, request.encoding_format)) for i, v in enumerate(vectors)]
        return oai.EmbeddingResponse(data=data, model=request.model, usage=oai.EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector
