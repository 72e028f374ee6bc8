"""`OwnedMemoryBanks`: the MemoryBanks API as one key sees it, over the banks of all of them.

Milvus keeps no owners, so the gateway wraps the banks' client: a bank is claimed for the key
that created it, listed only to it, and to any other key it does not exist (an admin key sees all).
"""

from __future__ import annotations

from llamaray.api.memory_banks import (
    MemoryBank,
    MemoryBankDocument,
    MemoryBanks,
    QueryMemoryBankRequest,
    QueryMemoryBankResponse,
)
from llamaray.errors import NotFoundError
from llamaray.security.ownership import Owners

KIND = "bank"


class OwnedMemoryBanks:
    def __init__(self, banks: MemoryBanks, owners: Owners) -> None:
        self.banks = banks
        self.owners = owners

    def _check(self, bank_uuid: str) -> None:
        self.owners.check(
            KIND, bank_uuid, lambda: NotFoundError(f"memory bank {bank_uuid!r} does not exist", "bank_uuid")
        )

    async def create_memory_bank(
        self,
        bank_uuid: str,
        bank_name: str,
        documents: list[MemoryBankDocument],
        chunking: dict[str, int] | None = None,
        full_text: bool | None = None,
    ) -> None:
        await self.banks.create_memory_bank(bank_uuid, bank_name, documents, chunking, full_text)
        self.owners.claim(KIND, bank_uuid)

    async def get_memory_banks(self) -> list[MemoryBank]:
        return self.owners.only_visible(KIND, await self.banks.get_memory_banks(), lambda bank: bank.uuid)

    async def remove_memory_bank(self, bank_uuid: str) -> str:
        self._check(bank_uuid)
        return await self.banks.remove_memory_bank(bank_uuid)

    async def post_insert_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        self._check(bank_uuid)
        await self.banks.post_insert_memory_documents(bank_uuid, documents)

    async def post_update_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        self._check(bank_uuid)
        await self.banks.post_update_memory_documents(bank_uuid, documents)

    async def post_get_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> list[MemoryBankDocument]:
        self._check(bank_uuid)
        return await self.banks.post_get_memory_documents(bank_uuid, document_uuids)

    async def remove_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> None:
        self._check(bank_uuid)
        await self.banks.remove_memory_documents(bank_uuid, document_uuids)

    async def query_memory_bank(self, request: QueryMemoryBankRequest) -> QueryMemoryBankResponse:
        self._check(request.bank_uuid)
        return await self.banks.query_memory_bank(request)
