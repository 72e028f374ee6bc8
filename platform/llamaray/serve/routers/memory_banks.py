"""MemoryBanks routes (API.md): `bank_uuid` and `bank_name` are query parameters, documents and
document uuids are the JSON body; `/memory_bank/query` is API.md's addition."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends

from llamaray.api.memory_banks import (
    DocumentIds,
    Documents,
    MemoryBank,
    MemoryBankDocument,
    QueryMemoryBankRequest,
    QueryMemoryBankResponse,
)
from llamaray.serve.routers.deps import Services, services

router = APIRouter(tags=["memory_banks"])


@router.post("/memory_banks/create", response_model=None)
async def create_memory_bank(
    bank_uuid: str,
    bank_name: str,
    documents: Documents = Body(default_factory=list),
    chunk_size_tokens: int | None = None,
    chunk_overlap_tokens: int | None = None,
    full_text: bool | None = None,
    s: Services = Depends(services),
) -> None:
    """Extensions (query parameters): the two chunk sizes override the deployment's for this bank;
    `full_text=false` makes a bank for dense queries only (no BM25 analysis on its writes)."""
    chunking = {
        k: v
        for k, v in {"chunk_size_tokens": chunk_size_tokens, "chunk_overlap_tokens": chunk_overlap_tokens}.items()
        if v is not None
    }
    await s.memory.create_memory_bank(bank_uuid, bank_name, documents, chunking, full_text)


@router.get("/memory_banks/get", response_model=list[MemoryBank])
async def get_memory_banks(s: Services = Depends(services)):
    return await s.memory.get_memory_banks()


@router.delete("/memory_banks/drop", response_model=str)
async def remove_memory_bank(bank_uuid: str, s: Services = Depends(services)):
    return await s.memory.remove_memory_bank(bank_uuid)


@router.post("/memory_bank/insert", response_model=None)
async def insert_documents(bank_uuid: str, documents: Documents, s: Services = Depends(services)) -> None:
    await s.memory.post_insert_memory_documents(bank_uuid, documents)


@router.post("/memory_bank/update", response_model=None)
async def update_documents(bank_uuid: str, documents: Documents, s: Services = Depends(services)) -> None:
    await s.memory.post_update_memory_documents(bank_uuid, documents)


@router.post("/memory_bank/get", response_model=list[MemoryBankDocument])
async def get_documents(bank_uuid: str, document_uuids: DocumentIds, s: Services = Depends(services)):
    return await s.memory.post_get_memory_documents(bank_uuid, document_uuids)


@router.post("/memory_bank/delete", response_model=None)
async def delete_documents(bank_uuid: str, document_uuids: DocumentIds, s: Services = Depends(services)) -> None:
    await s.memory.remove_memory_documents(bank_uuid, document_uuids)


@router.post("/memory_bank/query", response_model=QueryMemoryBankResponse)
async def query(request: QueryMemoryBankRequest, s: Services = Depends(services)):
    return await s.memory.query_memory_bank(request)
