"""Memory bank ingest and query: llamaray's HTTP API against the same work done directly.

One run measures, one after the other, on the same synthetic one-chunk documents:
  1. direct: sentence-transformers (all-MiniLM-L6-v2) + pymilvus on Milvus Lite in this process
     (the baseline): embed in batches and insert; then embed each query and search top 5;
  2. llamaray: `/memory_bank/insert` in batches over HTTP (gateway -> MemoryServer ->
     EmbeddingServer -> Milvus Lite), then `/memory_bank/query` one at a time;
and prints ingest chunks/s with its ratio to direct, and query latency p50/p99 with the overhead.
Goal: ingest at least 0.8 of direct, query overhead under 10 ms p50.

    python benchmarks/memory.py --chunks 10000 --queries 200      (and --chunks 100000)
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

from loadgen import write_result  # noqa: E402

WORDS = (
    "river mountain engine garden violin harbor planet circuit lantern meadow copper falcon "
    "quantum bakery glacier compass orchard signal canyon ember velvet summit tunnel prism"
).split()


def documents(n: int) -> list[tuple[str, str]]:
    return [
        (f"doc-{i}", " ".join(WORDS[(i * 7 + j * 5 + j * j) % len(WORDS)] for j in range(40)) + f" item {i}.")
        for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_direct(docs, queries, args, work: Path) -> dict:
    import torch
    from pymilvus import DataType, MilvusClient
    from sentence_transformers import SentenceTransformer

    from llamaray.memory.embeddings import model_path

    torch.set_num_threads(args.cpus)
    model = SentenceTransformer(model_path("all-MiniLM-L6-v2"), device="cpu")
    client = MilvusClient(str(work / "direct.db"))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("text", DataType.VARCHAR, max_length=4096)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=384)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection("direct", schema=schema, index_params=index)
    started = time.perf_counter()
    for start in range(0, len(docs), args.batch):
        batch = docs[start : start + args.batch]
        vectors = model.encode([text for _, text in batch], batch_size=64, normalize_embeddings=True)
        client.insert(
            "direct", [{"id": uuid, "text": text, "vector": v.tolist()} for (uuid, text), v in zip(batch, vectors)]
        )
    ingest_s = time.perf_counter() - started
    latencies = []
    for query in queries:
        began = time.perf_counter()
        vector = model.encode([query], normalize_embeddings=True)[0].tolist()
        client.search("direct", data=[vector], anns_field="vector", limit=5, output_fields=["text"])
        latencies.append(time.perf_counter() - began)
    client.close()
    return {
        "chunks_per_s": len(docs) / ingest_s,
        "query_p50_s": percentile(latencies, 0.5),
        "query_p99_s": percentile(latencies, 0.99),
    }


def bench_platform(docs, queries, args, work: Path) -> dict:
    import ray
    from ray import serve

    from llamaray.models.tiny import build_tiny_models
    from llamaray.serve.app import build_app
    from llamaray.serve.runtime import SERVE_ENV

    models = ROOT / "models"
    if not (models / "tiny-llama-chat").exists():
        build_tiny_models(models)
    os.environ.update(SERVE_ENV)
    ray.init(num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": 8102})
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
    url = "http://127.0.0.1:8102"
    with httpx.Client(base_url=url, timeout=600) as client:
        while client.get("/ready").status_code != 200:
            time.sleep(1)
        assert (
            client.post(
                "/memory_banks/create", params={"bank_uuid": "bench", "bank_name": "bench"}, json=[]
            ).status_code
            == 200
        )
        started = time.perf_counter()
        for start in range(0, len(docs), args.batch):
            body = [
                {"uuid": uuid, "content": base64.b64encode(text.encode()).decode(), "mime_type": "text/plain"}
                for uuid, text in docs[start : start + args.batch]
            ]
            response = client.post("/memory_bank/insert", params={"bank_uuid": "bench"}, json=body)
            response.raise_for_status()
        ingest_s = time.perf_counter() - started
        latencies = []
        for query in queries:
            began = time.perf_counter()
            client.post(
                "/memory_bank/query", json={"bank_uuid": "bench", "query": query, "top_k": 5}
            ).raise_for_status()
            latencies.append(time.perf_counter() - began)
    serve.shutdown()
    ray.shutdown()
    return {
        "chunks_per_s": len(docs) / ingest_s,
        "query_p50_s": percentile(latencies, 0.5),
        "query_p99_s": percentile(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--chunks", type=int, default=2000, help="documents of one chunk each (10000, 100000 for the issue's sizes)"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256, help="documents per insert call")
    parser.add_argument("--cpus", type=int, default=2, help="threads for embedding, in both systems")
    args = parser.parse_args()
    docs = documents(args.chunks)
    queries = [" ".join(WORDS[(q * 3 + j) % len(WORDS)] for j in range(6)) for q in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        direct = bench_direct(docs, queries, args, Path(tmp))
        print(
            f"  direct    {direct['chunks_per_s']:8.1f} chunks/s  query p50 {direct['query_p50_s'] * 1000:6.1f} ms",
            flush=True,
        )
        ours = bench_platform(docs, queries, args, Path(tmp))
    print(f"\nMemory banks, {args.chunks} chunks, {args.queries} queries, {args.cpus} embedding threads")
    print(f"  {'system':<10} {'chunks/s':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, result in (("direct", direct), ("llamaray", ours)):
        print(
            f"  {name:<10} {result['chunks_per_s']:>9.1f} {result['chunks_per_s'] / direct['chunks_per_s']:>6.2f} "
            f"{result['query_p50_s'] * 1000:>8.1f} {result['query_p99_s'] * 1000:>8.1f}"
        )
    overhead = (ours["query_p50_s"] - direct["query_p50_s"]) * 1000
    print(f"  query overhead p50: {overhead:.1f} ms")
    write_result(
        "memory",
        {
            "chunks": args.chunks,
            "queries": args.queries,
            "direct": direct,
            "llamaray": ours,
            "ingest_ratio": ours["chunks_per_s"] / direct["chunks_per_s"],
            "query_overhead_p50_ms": overhead,
        },
    )


if __name__ == "__main__":
    main()
