"""A memory bank write killed at any point is all there or not at all once the server restarts.

A child process writes to a real bank (SQLite, all-MiniLM-L6-v2, and Milvus Lite or a Milvus
server) in a loop of inserts, updates and deletes, and is killed (SIGKILL to its process group,
Milvus Lite's server with it; a Milvus server lives on with whatever half of a write reached it)
at a random moment; the next `MemoryService` recovers (on Milvus Lite as the only writer; on
the server as one replica of several, once the dead writer's lease expires), and every document
is then either registered with exactly its committed chunks, or absent with none.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llamaray.api.memory_banks import MemoryBankDocument, QueryMemoryBankRequest
from llamaray.config import MemorySettings
from llamaray.memory.embeddings import EmbeddingModel
from llamaray.memory.index import MilvusIndex
from llamaray.memory.service import BANK_KIND, MemoryService, document_kind
from llamaray.store.metadata import MetadataStore

BANK = "crashy"
WRITER = """
import asyncio, base64, sys
from tests.unit.test_memory_crash import service, document
async def main(rounds):
    s = service(sys.argv[1], sys.argv[3])
    if not await s.get_memory_banks():
        await s.create_memory_bank("crashy", "c", [document(f"d{i}", 0) for i in range(4)])
    for r in range(1, rounds):
        await s.post_update_memory_documents("crashy", [document(f"d{i}", r) for i in range(2)])
        await s.post_insert_memory_documents("crashy", [document(f"n{sys.argv[2]}-{r}-{i}", r) for i in range(3)])
        await s.remove_memory_documents("crashy", [f"n{sys.argv[2]}-{r}-0"])
        print("round", r, flush=True)
asyncio.run(main(1000))
"""


def document(uuid: str, round_: int) -> MemoryBankDocument:
    text = " ".join(f"Round {round_} of document {uuid} says sentence {i}." for i in range(30))
    return MemoryBankDocument(uuid=uuid, content=text.encode())


_model: EmbeddingModel | None = None


def service(data_dir: str, milvus_uri: str = "") -> MemoryService:
    global _model
    _model = _model or EmbeddingModel("all-MiniLM-L6-v2")

    async def embed(texts: list[str]) -> list[list[float]]:
        return _model.embed(texts)

    # On a server, as one of several replicas: a dead writer's lease is soon free to take over.
    settings = MemorySettings(chunk_size_tokens=32, chunk_overlap_tokens=8, write_lease_s=2)
    store = MetadataStore(Path(data_dir) / "metadata.db")
    index = MilvusIndex(milvus_uri or str(Path(data_dir) / "milvus.db"))
    return MemoryService(store, index, _model.tokenizer, embed, settings)


CHECKER = """
import json, sys
from tests.unit.test_memory_crash import recovered_state
print(json.dumps(recovered_state(sys.argv[1], sys.argv[2])))
"""


def recovered_state(data_dir: str, milvus_uri: str) -> dict:
    """What a restarted memory server finds, after its recovery (run in a process of its own,
    as a restart is: Milvus Lite lets one process open a database)."""
    s = service(data_dir, milvus_uri)
    if milvus_uri:  # a replica among others: takes over the banks whose writer's lease expired
        time.sleep(2.5)
    s.recover(only_writer=not milvus_uri)
    (bank,) = [record for key, record in s.store.list(BANK_KIND) if key == BANK]
    s.index._ready(bank["collection"])  # loaded, as after any restart
    rows = s.index.client.query(
        bank["collection"], filter='document_uuid != ""', output_fields=["document_uuid", "version"]
    )
    chunks: dict[str, list[int]] = {}
    for row in rows:
        chunks.setdefault(row["document_uuid"], []).append(row["version"])
    hits = asyncio.run(s.query_memory_bank(QueryMemoryBankRequest(bank_uuid=BANK, query="d0 says", top_k=5)))
    return {
        "unfinished": bool(bank.get("pending") or bank.get("cleanup")),
        "versions": {uuid: record["version"] for uuid, record in s.store.list(document_kind(BANK))},
        "chunk_versions": {uuid: sorted(set(versions)) for uuid, versions in chunks.items()},
        "hits": len(hits.chunks),
    }


@pytest.mark.slow
@pytest.mark.parametrize("milvus", ["lite", "server"])
def test_a_write_killed_at_any_moment_is_whole_or_absent_after_recovery(tmp_path, milvus, request):
    milvus_uri = request.getfixturevalue("milvus_url") if milvus == "server" else ""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rng = random.Random(7)
    for trial in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(trial), milvus_uri],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        first = child.stdout.readline()
        assert first.startswith(b"round"), (trial, child.stderr.read().decode(errors="replace")[-1500:])
        time.sleep(rng.uniform(0.0, 1.5))
        os.killpg(child.pid, signal.SIGKILL)  # the writer and its Milvus Lite server, mid-write
        child.wait()

        checked = subprocess.run(
            [sys.executable, "-c", CHECKER, str(tmp_path), milvus_uri],
            cwd=repo,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert checked.returncode == 0, checked.stderr.decode(errors="replace")[-1500:]
        state = json.loads(checked.stdout.decode().strip().splitlines()[-1])
        assert not state["unfinished"]
        # Every registered document has exactly the chunks of its committed version; no chunk
        # belongs to a document that is not registered.
        expected = {uuid: [version] for uuid, version in state["versions"].items()}
        assert state["chunk_versions"] == expected, (trial, state)
        assert state["hits"] > 0
