"""MemoryBanks API: banks of documents that agents and users ground the model in."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import ConfigDict, Field

from llamaray.api.common import ApiModel


class MemoryBank(ApiModel):
    uuid: str
    name: str


class MemoryBankDocument(ApiModel):
    # `content` is bytes in the draft: base64 in JSON, both ways.
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    uuid: str = Field(min_length=1)
    content: bytes
    metadata: dict[str, Any] = Field(default_factory=dict)
    mime_type: str = "text/plain"


class MemoryBanks(Protocol):
    async def create_memory_bank(
        self, bank_uuid: str, bank_name: str, documents: list[MemoryBankDocument]
    ) -> None: ...

    async def get_memory_banks(self) -> list[MemoryBank]: ...

    async def remove_memory_bank(self, bank_uuid: str) -> str: ...

    async def post_insert_memory_documents(
        self, bank_uuid: str, documents: list[MemoryBankDocument]
    ) -> None: ...

    async def post_update_memory_documents(
        self, bank_uuid: str, documents: list[MemoryBankDocument]
    ) -> None: ...

    async def post_get_memory_documents(
        self, bank_uuid: str, document_uuids: list[str]
    ) -> list[MemoryBankDocument]: ...

    async def remove_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> None: ...
