"""MemoryBanks API: banks of documents that agents and users ground the model in."""

from __future__ import annotations

import base64
from enum import Enum
from typing import Any, Protocol

from pydantic import Field, field_serializer, field_validator

from llamaray.api.common import ApiModel, Content


class MemoryBank(ApiModel):
    uuid: str
    name: str


class MemoryBankDocument(ApiModel):
    uuid: str = Field(min_length=1)
    content: bytes  # bytes in the draft: standard base64 (with padding) in JSON, both ways
    metadata: dict[str, Any] = Field(default_factory=dict)
    mime_type: str = "text/plain"

    @field_validator("content", mode="before")
    @classmethod
    def _from_base64(cls, value: Any) -> Any:
        # pydantic's own base64 mode is the URL-safe alphabet without padding, which the
        # draft's clients (Python's `base64.b64encode`) neither send nor read.
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise ValueError("content must be base64 (standard alphabet, padded)") from None
        return value

    @field_serializer("content", when_used="json")
    def _to_base64(self, value: bytes) -> str:
        return base64.b64encode(value).decode()


class QueryMode(str, Enum):
    dense = "dense"  # cosine over the embeddings
    bm25 = "bm25"  # Milvus full-text search
    hybrid = "hybrid"  # both, merged by reciprocal-rank fusion


class QueryMemoryBankRequest(ApiModel):
    """The body of `POST /memory_bank/query` (API.md's addition to the draft)."""

    bank_uuid: str
    query: Content
    top_k: int = Field(default=5, ge=1, le=1000)
    filter: dict[str, Any] = Field(default_factory=dict)  # metadata key -> value, all must match
    mode: QueryMode = QueryMode.dense


class MemoryChunk(ApiModel):
    document_uuid: str
    chunk_index: int
    text: str
    metadata: dict[str, Any]
    score: float


class QueryMemoryBankResponse(ApiModel):
    chunks: list[MemoryChunk]  # best first


class MemoryBanks(Protocol):
    async def create_memory_bank(
        self,
        bank_uuid: str,
        bank_name: str,
        documents: list[MemoryBankDocument],
        chunking: dict[str, int] | None = None,
    ) -> None:
        """`chunking` (an extension): `chunk_size_tokens` and `chunk_overlap_tokens` for this bank."""
        ...

    async def get_memory_banks(self) -> list[MemoryBank]: ...

    async def remove_memory_bank(self, bank_uuid: str) -> str: ...

    async def post_insert_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None: ...

    async def post_update_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None: ...

    async def post_get_memory_documents(
        self, bank_uuid: str, document_uuids: list[str]
    ) -> list[MemoryBankDocument]: ...

    async def remove_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> None: ...

    async def query_memory_bank(self, request: QueryMemoryBankRequest) -> QueryMemoryBankResponse: ...
