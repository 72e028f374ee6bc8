"""MemoryBanks API: banks of documents that agents and users ground the model in."""

from __future__ import annotations

import base64
import json
from enum import Enum
from typing import Any, Protocol

from pydantic import Field, field_serializer, field_validator
from typing_extensions import Annotated

from llamaray.api.common import ApiModel, Content
from llamaray.api.limits import at_most


class MemoryBank(ApiModel):
    uuid: str
    name: str


MAX_DOCUMENT_UUID_BYTES = 512
MAX_METADATA_BYTES = 65_536  # Milvus' JSON field size limit


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

    @field_validator("uuid")
    @classmethod
    def _fits_milvus_id(cls, value: str) -> str:
        # Milvus keeps at most 1024 bytes in a VARCHAR key; a chunk's id is the document's plus
        # its version and index.
        if len(value.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_UUID_BYTES:
            raise ValueError(f"at most {MAX_DOCUMENT_UUID_BYTES} bytes (UTF-8) in a document uuid")
        return value

    @field_validator("metadata")
    @classmethod
    def _fits_milvus_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass"))
        except ValueError:
            raise ValueError("NaN and Infinity are not JSON numbers") from None
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"{size} bytes of JSON, more than the {MAX_METADATA_BYTES} a Milvus JSON field holds")
        return value

    @field_serializer("content", when_used="json")
    def _to_base64(self, value: bytes) -> str:
        return base64.b64encode(value).decode()


# The bodies of insert/update and of get/delete: at most `limits.max_documents` in one request.
Documents = Annotated[list[MemoryBankDocument], at_most("max_documents", "documents")]
DocumentIds = Annotated[list[str], at_most("max_documents", "document uuids")]


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
        full_text: bool | None = None,
    ) -> None:
        """Extensions: `chunking` (`chunk_size_tokens`, `chunk_overlap_tokens`) for this bank;
        `full_text` (None: the deployment's `memory.full_text`) whether its chunks are analysed for
        BM25 (`bm25` and `hybrid` queries), which costs every write its analysis."""
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
