"""Two memory server replicas on one Milvus server and one PostgreSQL store, as on a cluster
(`memory_replicas: 2`): both write the same bank at once and read what the other wrote, with ids
and metadata of any alphabet; versions are never reused and every write is whole.

The replicas are two `MemoryService`s (each with its own client, lock and lease owner) on one
event loop, so their writes interleave for real; the real all-MiniLM-L6-v2 embeds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamaray.api.memory_banks import MemoryBankDocument, QueryMemoryBankRequest
from llamaray.config import MemorySettings
from llamaray.errors import NotFoundError
from llamaray.memory.embeddings import EmbeddingModel
from llamaray.memory.index import MilvusIndex
from llamaray.memory.service import BANK_KIND, WRITER_KIND, MemoryService, document_kind
from llamaray.store.metadata import MetadataStore
from tests.servers import fresh_database

ODD_IDS = ["résumé", 'say "hi"\\', "line\nbreak\ttab", "東京🚀", "nul\x00byte", "\u2028sep"]


@pytest.fixture(scope="module")
def embedder() -> EmbeddingModel:
    return EmbeddingModel("all-MiniLM-L6-v2")


@pytest.fixture()
def replicas(milvus_url, postgres_url, embedder) -> tuple[MemoryService, MemoryService]:
    database = fresh_database(postgres_url)

    async def embed(texts: list[str]) -> list[list[float]]:
        return embedder.embed(texts)

    settings = MemorySettings(
        milvus_uri=milvus_url, memory_replicas=2, chunk_size_tokens=32, chunk_overlap_tokens=8, write_lease_s=5
    )

    def replica() -> MemoryService:
        service = MemoryService(MetadataStore(database), MilvusIndex(milvus_url), embedder.tokenizer, embed, settings)
        service.recover(only_writer=False)
        return service

    return replica(), replica()


def document(uuid: str, text: str, **metadata) -> MemoryBankDocument:
    return MemoryBankDocument(uuid=uuid, content=text.encode(), metadata=metadata)


async def ids(service: MemoryService, bank: str, text: str, **where) -> list[str]:
    response = await service.query_memory_bank(
        QueryMemoryBankRequest(bank_uuid=bank, query=text, top_k=50, filter=where)
    )
    return [chunk.document_uuid for chunk in response.chunks]


def test_two_replicas_write_one_bank_at_once_and_read_each_others_writes(replicas):
    a, b = replicas

    async def scenario() -> None:
        await a.create_memory_bank("shared", "s", [document("seed", "The seed document about harbours.")])
        writes = [
            replica.post_insert_memory_documents(
                "shared",
                [document(f"{name}-{i}-{j}", f"Replica {name} batch {i} note {j} on harbours.") for j in range(3)],
            )
            for i in range(4)
            for name, replica in (("a", a), ("b", b))
        ]
        updates = [a.post_update_memory_documents("shared", [document("seed", "The seed, rewritten about tulips.")])]
        await asyncio.gather(*writes, *updates)

        expected = {"seed"} | {f"{name}-{i}-{j}" for name in "ab" for i in range(4) for j in range(3)}
        for reader in (a, b):
            assert set(await ids(reader, "shared", "harbours")) == expected
        # Nine writes after the create, each its own version: none reused, none lost.
        bank = a.store.get(BANK_KIND, "shared")
        versions = {record["version"] for _, record in a.store.list(document_kind("shared"))}
        assert bank["version"] == 10 and bank["next_version"] == 11 and len(versions) == 9
        assert not a.store.list(WRITER_KIND)  # every lease given back
        # The update left only the new text, seen from the replica that did not write it.
        seed = await b.query_memory_bank(QueryMemoryBankRequest(bank_uuid="shared", query="seed", filter={}))
        texts = [c.text for c in seed.chunks if c.document_uuid == "seed"]
        assert texts and all("tulips" in text for text in texts)

    asyncio.run(scenario())


def test_ids_and_metadata_of_any_alphabet_on_a_milvus_server(replicas):
    """The HTTP test of Milvus Lite (test_memory_banks_http), here on the server, written by
    one replica and read, updated and deleted by the other."""
    a, b = replicas

    async def scenario() -> None:
        docs = [
            document(uuid, f"Document {i} tells about the lighthouse keeper.", tag=uuid)
            for i, uuid in enumerate(ODD_IDS)
        ]
        await a.create_memory_bank("alphabets", "a", docs)
        assert set(await ids(b, "alphabets", "lighthouse keeper")) == set(ODD_IDS)
        for uuid in ODD_IDS:
            assert await ids(b, "alphabets", "keeper", tag=uuid) == [uuid]
        await b.post_update_memory_documents("alphabets", [document(uuid, "Now about tulips.") for uuid in ODD_IDS[:3]])
        response = await a.query_memory_bank(QueryMemoryBankRequest(bank_uuid="alphabets", query="keeper", top_k=50))
        assert {c.document_uuid for c in response.chunks if "lighthouse" in c.text} == set(ODD_IDS[3:])
        await a.remove_memory_documents("alphabets", ODD_IDS)
        assert await ids(b, "alphabets", "lighthouse keeper") == []
        await b.remove_memory_bank("alphabets")
        with pytest.raises(NotFoundError):
            await a.query_memory_bank(QueryMemoryBankRequest(bank_uuid="alphabets", query="x"))

    asyncio.run(scenario())


def test_a_write_in_flight_is_hidden_until_committed(replicas, tmp_path: Path):
    """Chunks reach Milvus before the commit; a query on the other replica never sees them until
    then (nor an update's old chunks after it), so a write appears whole or not at all."""
    a, b = replicas

    async def scenario() -> None:
        await a.create_memory_bank("hidden", "h", [document("old", "An old note on lighthouses.")])
        bank = a.store.get(BANK_KIND, "hidden")
        # What a writer that died after inserting its chunks leaves: the bank noting it pending.
        rows = await a._rows([document("new", "A new note on lighthouses.")], 5, bank["chunking"])
        a.store.put(BANK_KIND, "hidden", {**bank, "next_version": 6, "pending": {"version": 5, "documents": ["new"]}})
        a.index.insert(bank["collection"], rows)
        assert await ids(b, "hidden", "lighthouses") == ["old"]
        # The next writer rolls the dead write back, then writes its own.
        await b.post_insert_memory_documents("hidden", [document("later", "A later note on lighthouses.")])
        assert sorted(await ids(a, "hidden", "lighthouses")) == ["later", "old"]
        assert a.store.get(BANK_KIND, "hidden")["version"] == 6

    asyncio.run(scenario())
