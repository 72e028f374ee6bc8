"""Memory bank ingest and query: llamaray's HTTP API against the same work done directly.

The same synthetic one-chunk documents and queries go, A/B interleaved over --repetitions (a
fresh collection and bank each time, the platform started once), to
  1. direct (the baseline): sentence-transformers (all-MiniLM-L6-v2) in this process and the
     platform's own Milvus schema and calls (`llamaray.memory.index.MilvusIndex`: the same fields,
     the same BM25 function where Milvus has it, the same search) on Milvus Lite; embed in
     batches and insert; then embed each query and search top 5;
  2. llamaray: `/memory_bank/insert` in batches over HTTP (HAProxy -> gateway -> MemoryServer,
     chunks embedded by the EmbeddingServer -> Milvus Lite), then `/memory_bank/query` one at a
     time (the query embedded in the memory server);
so the difference is what the platform adds (HTTP, validation, the write's commit records, the
hops). Each side ingests in turn; then the queries go to both in pairs (the order alternating), and
the query overhead is the median of the pairs' differences. Prints the medians of ingest chunks/s
with its ratio to direct, query latency p50/p99, the overhead (and its range over repetitions),
and the CPU-seconds each side spent on ingest and on queries (this process; the Ray cluster's).
Goals: ingest at least 0.9 of direct at 10k and 100k chunks; query overhead under 5 ms p50.

    python benchmarks/memory.py --chunks 10000 --queries 200      (and --chunks 100000)
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

from loadgen import cpu_seconds, spent, write_result  # noqa: E402

WORDS = (
    "river mountain engine garden violin harbor planet circuit lantern meadow copper falcon "
    "quantum bakery glacier compass orchard signal canyon ember velvet summit tunnel prism"
).split()
PORT = 8102


def documents(n: int) -> list[tuple[str, str]]:
    return [
        (f"doc-{i}", " ".join(WORDS[(i * 7 + j * 5 + j * j) % len(WORDS)] for j in range(40)) + f" item {i}.")
        for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Direct:
    """The baseline: the embedding model and the platform's Milvus index in this process."""

    def __init__(self, args, work: Path) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from llamaray.memory.embeddings import model_path
        from llamaray.memory.index import MilvusIndex

        torch.set_num_threads(args.cpus)
        self.model = SentenceTransformer(model_path("all-MiniLM-L6-v2"), device="cpu")
        self.index = MilvusIndex(str(work / "direct.db"))
        self.args = args

    def ingest(self, docs, rep: int) -> str:
        name = f"direct_{rep}"
        self.index.create(name, 384)
        for start in range(0, len(docs), self.args.batch):
            batch = docs[start : start + self.args.batch]
            vectors = self.model.encode([text for _, text in batch], batch_size=64, normalize_embeddings=True)
            rows = [
                {
                    "id": f"{uuid}#1#0",
                    "document_uuid": uuid,
                    "version": 1,
                    "chunk_index": 0,
                    "text": text,
                    "metadata": {},
                    "vector": v.tolist(),
                }
                for (uuid, text), v in zip(batch, vectors)
            ]
            self.index.insert(name, rows)
        return name

    def query(self, name: str, query: str) -> None:
        vector = self.model.encode([query], normalize_embeddings=True)[0].tolist()
        self.index.search(name, vector, query, 5, "dense", {}, "")  # the API's default mode

    def drop(self, name: str) -> None:
        self.index.drop(name)

    def processes(self) -> list[psutil.Process]:
        """This process: the model and Milvus Lite (whose server runs in-process) are both here."""
        return [psutil.Process()]


class Platform:
    """llamaray on a local Ray cluster, over HTTP."""

    def __init__(self, args, work: Path) -> None:
        import ray
        from ray import serve

        from llamaray.models.tiny import build_tiny_models
        from llamaray.serve.app import build_app
        from llamaray.serve.runtime import serve_env

        models = ROOT / "models"
        if not (models / "tiny-llama-chat").exists():
            build_tiny_models(models)
        os.environ.update(serve_env())
        ray.init(num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        platform = {
            "data_dir": str(work / "platform"),
            "models": [
                {
                    "model_id": "tiny-llama-chat",
                    "path": str(models / "tiny-llama-chat"),
                    "dtype": "float32",
                    "enforce_eager": True,
                    "max_model_len": 512,
                    "gpu_memory_utilization": 0.3,
                }
            ],
            "memory": {"embedding_threads": args.cpus},
        }
        serve.run(build_app(platform), name="llamaray", route_prefix="/")
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=600)
        while self.client.get("/ready").status_code != 200:
            time.sleep(1)
        self.args = args

    def ingest(self, docs, rep: int) -> str:
        client, bank = self.client, f"bench-{rep}"
        client.post("/memory_banks/create", params={"bank_uuid": bank, "bank_name": bank}, json=[]).raise_for_status()
        for start in range(0, len(docs), self.args.batch):
            body = [
                {"uuid": uuid, "content": base64.b64encode(text.encode()).decode(), "mime_type": "text/plain"}
                for uuid, text in docs[start : start + self.args.batch]
            ]
            client.post("/memory_bank/insert", params={"bank_uuid": bank}, json=body).raise_for_status()
        return bank

    def query(self, bank: str, query: str) -> None:
        self.client.post("/memory_bank/query", json={"bank_uuid": bank, "query": query, "top_k": 5}).raise_for_status()

    def drop(self, bank: str) -> None:
        self.client.delete("/memory_banks/drop", params={"bank_uuid": bank})

    def processes(self) -> list[psutil.Process]:
        """Ray's processes: every child of this one."""
        return psutil.Process().children(recursive=True)

    def close(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--chunks", type=int, default=2000, help="documents of one chunk each (10000, 100000 for the issue's sizes)"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256, help="documents per insert call")
    parser.add_argument("--cpus", type=int, default=2, help="threads for embedding, in both systems")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    docs = documents(args.chunks)
    queries = [" ".join(WORDS[(q * 3 + j) % len(WORDS)] for j in range(6)) for q in range(args.queries)]
    runs: dict[str, list[dict]] = {"direct": [], "llamaray": []}
    overheads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        systems = {"direct": Direct(args, Path(tmp)), "llamaray": Platform(args, Path(tmp))}
        nice = sorted({p.nice() for p in [psutil.Process(), *psutil.Process().children(recursive=True)]})
        try:
            for rep in range(args.repetitions):
                order = ["direct", "llamaray"] if rep % 2 == 0 else ["llamaray", "direct"]
                results = measure(systems, order, docs, queries, rep)
                for name in order:
                    runs[name].append(results[name])
                    result = results[name]
                    print(
                        f"  rep {rep} {name:<9} {result['chunks_per_s']:8.1f} chunks/s  "
                        f"query p50 {result['query_p50_s'] * 1000:6.1f} ms  "
                        f"cpu {result['ingest_cpu_s']:.1f} + {result['query_cpu_s']:.1f} s",
                        flush=True,
                    )
                print(f"  rep {rep} query overhead p50 (paired): {results['overhead_p50_ms']:.2f} ms", flush=True)
                overheads.append(results["overhead_p50_ms"])
        finally:
            systems["llamaray"].close()

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    direct_rate = median("direct", "chunks_per_s")
    print(f"\nMemory banks, {args.chunks} chunks, {args.queries} queries, {args.cpus} embedding threads")
    print(f"medians of {args.repetitions} repetitions, A/B interleaved; every process at nice {nice}")
    header = f"  {'system':<10} {'chunks/s':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'ingest cpu s':>13} {'query cpu s':>12}")
    for name in runs:
        print(
            f"  {name:<10} {median(name, 'chunks_per_s'):>9.1f} {median(name, 'chunks_per_s') / direct_rate:>6.2f} "
            f"{median(name, 'query_p50_s') * 1000:>8.1f} {median(name, 'query_p99_s') * 1000:>8.1f} "
            f"{median(name, 'ingest_cpu_s'):>13.1f} {median(name, 'query_cpu_s'):>12.1f}"
        )
    overhead = statistics.median(overheads)
    print(
        f"  query overhead p50: {overhead:.2f} ms (median of the paired per-query differences; "
        f"per repetition {min(overheads):.2f} to {max(overheads):.2f} ms)"
    )
    write_result(
        "memory",
        {
            "chunks": args.chunks,
            "queries": args.queries,
            "nice": nice,
            "runs": runs,
            "ingest_ratio": median("llamaray", "chunks_per_s") / direct_rate,
            "query_overhead_p50_ms": overhead,
            "query_overhead_p50_ms_per_rep": overheads,
        },
    )


def measure(systems: dict, order: list[str], docs, queries, rep: int) -> dict:
    """One repetition. Each system ingests in turn; then the queries go to both in pairs, the
    pair's order alternating, so that a slow moment of this shared machine falls on both sides of
    a pair: the overhead is the median of the pairs' differences, not a difference of medians
    taken minutes apart (which swung by +-15 ms from run to run here)."""
    results: dict = {name: {} for name in order}
    banks = {}
    for name in order:
        system = systems[name]
        before = cpu_seconds(system.processes())
        started = time.perf_counter()
        banks[name] = system.ingest(docs, rep)
        results[name]["chunks_per_s"] = len(docs) / (time.perf_counter() - started)
        results[name]["ingest_cpu_s"] = spent(before, cpu_seconds(system.processes()))
    latencies: dict[str, list[float]] = {name: [] for name in order}
    before = {name: cpu_seconds(systems[name].processes()) for name in order}
    for i, query in enumerate(queries):
        for name in order if i % 2 == 0 else order[::-1]:
            began = time.perf_counter()
            systems[name].query(banks[name], query)
            latencies[name].append(time.perf_counter() - began)
    for name in order:
        # This process also runs the HTTP client of llamaray's queries: a few ms of its CPU-seconds.
        results[name]["query_cpu_s"] = spent(before[name], cpu_seconds(systems[name].processes()))
        results[name]["query_p50_s"] = percentile(latencies[name], 0.5)
        results[name]["query_p99_s"] = percentile(latencies[name], 0.99)
        systems[name].drop(banks[name])
    paired = [(ours - theirs) * 1000 for ours, theirs in zip(latencies["llamaray"], latencies["direct"])]
    results["overhead_p50_ms"] = statistics.median(paired)
    return results


if __name__ == "__main__":
    main()
