"""The MemoryBanks API over Milvus (`MemoryServer` in `llamaray.serve` hosts it).

Banks and documents (their bytes, metadata and type) are kept in the metadata store; Milvus
holds the chunks. A write is checked whole first (every document decodes, is within size, is
new or known as the route needs), then embedded, then written: a bad document or a failed
embedding leaves nothing behind, and a failed index write is undone before the error returns.

A write crosses two stores, so it is all-or-nothing after a crash at any point too: the bank's
record first notes the write it is about to make (`pending`: its version, reserved for good, and
its documents), then the chunks go into Milvus, then one SQLite transaction commits the bank's
version with the documents' records; what is left to clean after the commit (an update's old
chunks, a delete's chunks) is noted in the same transaction (`cleanup`). A query never sees a
pending write's chunks nor what a cleanup is to remove, so each write appears whole or not at all.

Replicas on a Milvus server share banks: a writer holds the bank's lease in the metadata store
(`memory_writer`, renewed while it writes), so versions are never reused across replicas, and the
one that takes a lease a dead writer let expire first rolls back that writer's pending write.
`recover()`, run when a memory server starts, does the same for every bank no live writer holds,
and (the only replica, so the only writer) drops the collections of banks that were never
created or were dropped.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable
from uuid import uuid4

import numpy as np

from llamaray.api.common import content_text
from llamaray.api.memory_banks import (
    MemoryBank,
    MemoryBankDocument,
    MemoryChunk,
    QueryMemoryBankRequest,
    QueryMemoryBankResponse,
)
from llamaray.config import MemorySettings
from llamaray.errors import ConflictError, InvalidRequestError, NotFoundError, TooManyRequestsError
from llamaray.memory.chunking import chunk_text
from llamaray.memory.extract import document_text
from llamaray.memory.index import MilvusIndex, collection_name, quote
from llamaray.store.metadata import MetadataStore

logger = logging.getLogger(__name__)

BANK_KIND = "memory_bank"
WRITER_KIND = "memory_writer"  # a bank's write lease
LEASE_WAIT_S = 120.0  # a write waits this long for another replica's (`write_lease_s`), then 429
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 16, 8192
Embed = Callable[[list[str]], Awaitable[np.ndarray]]  # float32, one row per text
EmbedOne = Callable[[str], np.ndarray]  # blocking: it runs on the query's worker thread


def document_kind(bank_uuid: str) -> str:
    return f"memory_document:{bank_uuid}"


class MemoryService:
    def __init__(
        self,
        store: MetadataStore,
        index: MilvusIndex,
        tokenizer,
        embed: Embed,
        settings: MemorySettings,
        embed_query: EmbedOne | None = None,
    ) -> None:
        """`embed` takes a write's chunks (batched by the embedding deployment); `embed_query`,
        if given, embeds one query in this process (blocking, on the query's worker thread): a
        query then makes no hop to the embedder."""
        self.store = store
        self.index = index
        self.tokenizer = tokenizer
        self.embed = embed
        self.embed_query = embed_query
        self.settings = settings
        self._lock = asyncio.Lock()  # one write at a time in this replica; the lease orders replicas
        self.owner = uuid4().hex

    async def create_memory_bank(
        self,
        bank_uuid: str,
        bank_name: str,
        documents: list[MemoryBankDocument],
        chunking: dict[str, int] | None = None,
        full_text: bool | None = None,
    ) -> None:
        """`chunking` (`chunk_size_tokens`, `chunk_overlap_tokens`) overrides the deployment's
        sizes for this bank; every later write to the bank uses them. `full_text` (default: the
        deployment's) decides whether its collection has the BM25 function."""
        if not bank_uuid:
            raise InvalidRequestError("bank_uuid must not be empty", "bank_uuid")
        sizes = self._chunking(chunking or {})
        async with self._writing(bank_uuid):
            try:
                await asyncio.to_thread(self.store.get, BANK_KIND, bank_uuid)
                raise ConflictError(f"memory bank {bank_uuid!r} already exists", "bank_uuid")
            except NotFoundError:
                pass
            rows = await self._rows(documents, version=1, sizes=sizes)
            name = collection_name(bank_uuid)
            dimension = len(rows[0]["vector"]) if rows else len((await self.embed(["dimension"]))[0])
            await asyncio.to_thread(self.index.drop, name)  # a create that crashed before its commit
            wanted = self.settings.full_text if full_text is None else full_text
            await asyncio.to_thread(self.index.create, name, dimension, wanted)
            try:
                await asyncio.to_thread(self.index.insert, name, rows)
                bank = {
                    "name": bank_name,
                    "collection": name,
                    "version": 1,
                    "next_version": 2,
                    "chunking": sizes,
                    "full_text": wanted,  # asked for; a Milvus without BM25 says so at query time
                }
                commit = [(BANK_KIND, bank_uuid, bank), *self._document_records(bank_uuid, documents, 1)]
                await asyncio.to_thread(self.store.write_many, commit)  # the bank exists from here
            except Exception:
                await asyncio.to_thread(self.index.drop, name)
                raise

    async def get_memory_banks(self) -> list[MemoryBank]:
        banks = await asyncio.to_thread(self.store.list, BANK_KIND)
        return [MemoryBank(uuid=key, name=record["name"]) for key, record in banks]

    async def remove_memory_bank(self, bank_uuid: str) -> str:
        async with self._writing(bank_uuid):
            bank = await self._bank(bank_uuid)
            await asyncio.to_thread(self._forget_bank, bank_uuid)  # gone for everyone from here
            await asyncio.to_thread(self.index.drop, bank["collection"])  # or at recovery
        return bank_uuid

    def _forget_bank(self, bank_uuid: str) -> None:
        documents = [(document_kind(bank_uuid), key) for key, _ in self.store.list(document_kind(bank_uuid))]
        self.store.write_many(deletes=[*documents, (BANK_KIND, bank_uuid)])

    async def post_insert_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        async with self._writing(bank_uuid):
            bank = await self._bank(bank_uuid)
            uuids = [document.uuid for document in documents]
            existing = await asyncio.to_thread(self.store.existing, document_kind(bank_uuid), uuids)
            for i, document in enumerate(documents):
                if document.uuid in existing:
                    raise ConflictError(
                        f"document {document.uuid!r} is already in bank {bank_uuid!r}; /memory_bank/update replaces it",
                        f"documents[{i}].uuid",
                    )
            await self._write(bank_uuid, bank, documents)

    async def post_update_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        async with self._writing(bank_uuid):
            bank = await self._bank(bank_uuid)
            await self._known(bank_uuid, [d.uuid for d in documents], "documents[{i}].uuid")
            await self._write(bank_uuid, bank, documents, replace=True)

    async def post_get_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> list[MemoryBankDocument]:
        await self._bank(bank_uuid)
        records = await self._known(bank_uuid, document_uuids, "document_uuids[{i}]")
        return [
            MemoryBankDocument(
                uuid=uuid, content=base64.b64decode(r["content"]), metadata=r["metadata"], mime_type=r["mime_type"]
            )
            for uuid, r in zip(document_uuids, records)
        ]

    async def remove_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> None:
        async with self._writing(bank_uuid):
            bank = await self._bank(bank_uuid)
            await self._known(bank_uuid, document_uuids, "document_uuids[{i}]")
            cleanup = {"documents": list(document_uuids), "except_version": None}
            commit = [(BANK_KIND, bank_uuid, {**bank, "cleanup": cleanup})]
            deletes = [(document_kind(bank_uuid), uuid) for uuid in document_uuids]
            await asyncio.to_thread(self.store.write_many, commit, deletes)  # gone from here
            await self._clean(bank_uuid, {**bank, "cleanup": cleanup})

    async def query_memory_bank(self, request: QueryMemoryBankRequest) -> QueryMemoryBankResponse:
        if self.embed_query is not None:  # the whole query in one trip to a thread
            return await asyncio.to_thread(self._query_here, request)
        bank = await self._bank(request.bank_uuid)
        text = query_text(request)
        return await asyncio.to_thread(self._search, bank, (await self.embed([text]))[0], text, request)

    def _query_here(self, request: QueryMemoryBankRequest) -> QueryMemoryBankResponse:
        """The bank's record, the query's vector and the search, on one worker thread: at ~30 ms a
        query, each extra hop between the event loop and a thread cost a measurable share of it."""
        bank = self._bank_now(request.bank_uuid)
        text = query_text(request)
        return self._search(bank, self.embed_query(text), text, request)

    def _search(
        self, bank: dict[str, Any], vector: np.ndarray, text: str, request: QueryMemoryBankRequest
    ) -> QueryMemoryBankResponse:
        if request.mode.value != "dense" and not bank.get("full_text", True):  # banks before the option had it
            raise InvalidRequestError(
                f"mode {request.mode.value!r} needs full-text search; bank {request.bank_uuid!r} was created "
                "with full_text=false",
                "mode",
            )
        hits = self.index.search(
            bank["collection"], vector, text, request.top_k, request.mode.value, request.filter, uncommitted(bank)
        )
        return QueryMemoryBankResponse(chunks=[MemoryChunk(**hit) for hit in hits])

    async def _write(
        self, bank_uuid: str, bank: dict[str, Any], documents: list[MemoryBankDocument], replace: bool = False
    ) -> None:
        version = bank.get("next_version", bank["version"] + 1)  # never one a crashed write used
        uuids = [d.uuid for d in documents]
        rows = await self._rows(documents, version, bank.get("chunking") or self._chunking({}))
        name = bank["collection"]
        bank = {**bank, "next_version": version + 1}
        pending = {**bank, "pending": {"version": version, "documents": uuids}}
        await asyncio.to_thread(self.store.put, BANK_KIND, bank_uuid, pending)
        try:
            await asyncio.to_thread(self.index.insert, name, rows)
        except Exception:  # undo this write's chunks; the documents' earlier chunks stay
            await asyncio.to_thread(self.index.delete_documents, name, uuids, f"== {version}")
            await asyncio.to_thread(self.store.put, BANK_KIND, bank_uuid, bank)
            raise
        # An update's old chunks go once the new ones are committed.
        cleanup = {"documents": uuids, "except_version": version} if replace else None
        committed = {**bank, "version": version, "cleanup": cleanup}
        commit = [(BANK_KIND, bank_uuid, committed), *self._document_records(bank_uuid, documents, version)]
        await asyncio.to_thread(self.store.write_many, commit)
        await self._clean(bank_uuid, committed)

    async def _clean(self, bank_uuid: str, bank: dict[str, Any]) -> None:
        await asyncio.to_thread(self._clean_now, bank_uuid, bank)

    def _clean_now(self, bank_uuid: str, bank: dict[str, Any]) -> None:
        """The chunks a committed write left to delete, then the note of them."""
        cleanup = bank.get("cleanup")
        if cleanup:
            keep = cleanup.get("except_version")
            versions = f"!= {keep}" if keep is not None else ""
            self.index.delete_documents(bank["collection"], cleanup["documents"], versions)
        self.store.put(BANK_KIND, bank_uuid, {**bank, "cleanup": None})

    def recover(self, only_writer: bool) -> None:
        """Before the server takes requests: each bank's pending write rolled back and its cleanup
        finished. The only writer (one replica) also takes back the leases its dead predecessor
        held and drops the collections no bank owns; one of several leaves the banks that a live
        replica is writing to (their writes hide until committed) and every collection alone."""
        if only_writer:
            self.store.write_many(deletes=[(WRITER_KIND, key) for key, _ in self.store.list(WRITER_KIND)])
        owned = set()
        for bank_uuid, bank in self.store.list(BANK_KIND):
            owned.add(bank["collection"])
            if not (bank.get("pending") or bank.get("cleanup")):
                continue
            if self.store.claim(WRITER_KIND, bank_uuid, self.owner, self.settings.write_lease_s):
                try:
                    self._repair(bank_uuid)
                finally:
                    self.store.release(WRITER_KIND, bank_uuid, self.owner)
        if only_writer:
            for name in self.index.collections():
                if name not in owned:
                    self.index.drop(name)

    def _repair(self, bank_uuid: str) -> None:
        """Under the bank's lease: a pending write (its writer died) rolled back, a cleanup finished."""
        try:
            bank = self.store.get(BANK_KIND, bank_uuid)
        except NotFoundError:
            return
        pending = bank.get("pending")
        if pending:
            self.index.delete_documents(bank["collection"], pending["documents"], f"== {pending['version']}")
            bank = {**bank, "pending": None}
            self.store.put(BANK_KIND, bank_uuid, bank)
        if bank.get("cleanup"):
            self._clean_now(bank_uuid, bank)

    @asynccontextmanager
    async def _writing(self, bank_uuid: str) -> AsyncIterator[None]:
        """This replica's turn to write the bank: its own lock, then the bank's lease (renewed
        while the write lasts); what a dead writer left half done is repaired first."""
        async with self._lock:
            deadline = time.monotonic() + LEASE_WAIT_S
            while not await asyncio.to_thread(
                self.store.claim, WRITER_KIND, bank_uuid, self.owner, self.settings.write_lease_s
            ):
                if time.monotonic() > deadline:
                    raise TooManyRequestsError(
                        f"memory bank {bank_uuid!r} is being written by another replica", "bank_uuid", 5
                    )
                await asyncio.sleep(0.05)
            renew = asyncio.create_task(self._renew(bank_uuid))
            try:
                await asyncio.to_thread(self._repair, bank_uuid)
                yield
            finally:
                renew.cancel()
                await asyncio.to_thread(self.store.release, WRITER_KIND, bank_uuid, self.owner)

    async def _renew(self, bank_uuid: str) -> None:
        """Keeps the lease while the write lasts; a store that fails a renewal is asked again."""
        lease_s = self.settings.write_lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                await asyncio.to_thread(self.store.claim, WRITER_KIND, bank_uuid, self.owner, lease_s)
            except Exception:  # noqa: BLE001 - the write itself will meet the store's error, if it lasts
                logger.warning("renewing the write lease of bank %r failed; trying again", bank_uuid, exc_info=True)

    def _chunking(self, asked: dict[str, int]) -> dict[str, int]:
        size = asked.get("chunk_size_tokens") or self.settings.chunk_size_tokens
        overlap = asked.get("chunk_overlap_tokens")
        overlap = self.settings.chunk_overlap_tokens if overlap is None else overlap
        if not MIN_CHUNK_TOKENS <= size <= MAX_CHUNK_TOKENS:
            raise InvalidRequestError(
                f"chunk_size_tokens must be from {MIN_CHUNK_TOKENS} to {MAX_CHUNK_TOKENS}", "chunk_size_tokens"
            )
        # Overlap at most half a chunk: each chunk then moves on by at least half its size, so a
        # document makes at most twice the chunks it would without overlap.
        if not 0 <= overlap <= size // 2:
            raise InvalidRequestError(
                f"chunk_overlap_tokens must be from 0 to half of chunk_size_tokens ({size // 2})",
                "chunk_overlap_tokens",
            )
        return {"chunk_size_tokens": size, "chunk_overlap_tokens": overlap}

    async def _rows(
        self, documents: list[MemoryBankDocument], version: int, sizes: dict[str, int]
    ) -> list[dict[str, Any]]:
        """Every document checked, chunked and embedded, or an error naming the bad one. The
        extraction (a PDF) and the tokenising run off the replica's event loop."""
        pieces = await asyncio.to_thread(self._pieces, documents, sizes)
        vectors = await self.embed([text for _, _, text in pieces]) if pieces else []
        return [
            {
                "id": f"{document.uuid}#{version}#{index}",
                "document_uuid": document.uuid,
                "version": version,
                "chunk_index": index,
                "text": text,
                "metadata": document.metadata,
                "vector": vector,
            }
            for (document, index, text), vector in zip(pieces, vectors)
        ]

    def _pieces(
        self, documents: list[MemoryBankDocument], sizes: dict[str, int]
    ) -> list[tuple[MemoryBankDocument, int, str]]:
        seen: set[str] = set()
        pieces: list[tuple[MemoryBankDocument, int, str]] = []
        for i, document in enumerate(documents):
            param = f"documents[{i}]"
            if document.uuid in seen:
                raise InvalidRequestError(f"document {document.uuid!r} appears twice", f"{param}.uuid")
            seen.add(document.uuid)
            if len(document.content) > self.settings.max_document_bytes:
                raise InvalidRequestError(
                    f"document {document.uuid!r} is {len(document.content)} bytes; "
                    f"the limit is {self.settings.max_document_bytes}",
                    f"{param}.content",
                )
            text = document_text(document.content, document.mime_type, param)
            chunks = chunk_text(text, self.tokenizer, sizes["chunk_size_tokens"], sizes["chunk_overlap_tokens"])
            if len(chunks) > self.settings.max_chunks_per_document:
                raise InvalidRequestError(
                    f"document {document.uuid!r} makes {len(chunks)} chunks, more than "
                    f"memory.max_chunks_per_document ({self.settings.max_chunks_per_document}); "
                    "split it or use larger chunks",
                    f"{param}.content",
                )
            if not chunks:
                raise InvalidRequestError(f"document {document.uuid!r} has no text to index", f"{param}.content")
            pieces += [(document, chunk.index, chunk.text) for chunk in chunks]
        return pieces

    def _document_records(
        self, bank_uuid: str, documents: list[MemoryBankDocument], version: int
    ) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (
                document_kind(bank_uuid),
                document.uuid,
                {
                    "content": base64.b64encode(document.content).decode(),
                    "metadata": document.metadata,
                    "mime_type": document.mime_type,
                    "version": version,
                    "stored_at": time.time(),
                },
            )
            for document in documents
        ]

    async def _bank(self, bank_uuid: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._bank_now, bank_uuid)

    def _bank_now(self, bank_uuid: str) -> dict[str, Any]:
        try:
            return self.store.get(BANK_KIND, bank_uuid)
        except NotFoundError:
            raise NotFoundError(f"memory bank {bank_uuid!r} does not exist", "bank_uuid") from None

    async def _known(self, bank_uuid: str, document_uuids: list[str], param: str) -> list[dict[str, Any]]:
        records = []
        for i, uuid in enumerate(document_uuids):
            try:
                records.append(await asyncio.to_thread(self.store.get, document_kind(bank_uuid), uuid))
            except NotFoundError:
                raise NotFoundError(f"document {uuid!r} is not in bank {bank_uuid!r}", param.format(i=i)) from None
        return records


def query_text(request: QueryMemoryBankRequest) -> str:
    text = content_text(request.query)
    if not text.strip():
        raise InvalidRequestError("the query is empty", "query")
    return text


def uncommitted(bank: dict[str, Any]) -> str:
    """The chunks a query must not see, as a Milvus expression: a pending write's (not committed,
    maybe half written) and those a committed write left to delete (an update's old ones)."""
    terms = []
    if pending := bank.get("pending"):
        terms.append(f"version == {int(pending['version'])}")
    if cleanup := bank.get("cleanup"):
        documents = f"document_uuid in [{', '.join(map(quote, cleanup['documents']))}]"
        keep = cleanup.get("except_version")
        terms.append(documents if keep is None else f"({documents} and version != {int(keep)})")
    return " or ".join(terms)
