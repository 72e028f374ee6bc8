"""Shared by the benchmarks: an OpenAI-API load generator and the one-line result report.

Run as a script it is the non-streaming load generator of `serving.py`, in a process of its own
(vLLM's `vllm bench serve` drives the streaming cells; it only streams):

    python benchmarks/loadgen.py http://127.0.0.1:8000 tiny-llama-chat --requests 1000 --concurrency 32
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

RESULTS = Path(__file__).parent / "results"


@dataclass
class LoadResult:
    system: str
    mode: str
    requests: int
    concurrency: int
    output_tokens: int
    seconds: float
    tokens_per_s: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    errors: int
    prompt_tokens: int = 0  # the server's `usage.prompt_tokens`, summed: the same work on each side


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _one(client: httpx.AsyncClient, body: dict, stream: bool) -> tuple[int, float | None, int]:
    started = time.perf_counter()
    if not stream:
        response = await client.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        usage = response.json()["usage"]
        return usage["completion_tokens"], None, usage["prompt_tokens"]
    ttft = None
    tokens = prompt_tokens = 0
    async with client.stream(
        "POST", "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                ttft = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
                prompt_tokens = chunk["usage"]["prompt_tokens"]
    return tokens, ttft, prompt_tokens


async def run_load(
    base_url: str, model: str, *, system: str, requests: int, concurrency: int, max_tokens: int, stream: bool
) -> LoadResult:
    """`requests` chat completions of exactly `max_tokens` tokens each, `concurrency` at a time."""
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    semaphore = asyncio.Semaphore(concurrency)
    tokens = prompt_tokens = 0
    ttfts: list[float] = []
    errors = 0

    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:

        def body(i: int) -> dict:
            return {
                "model": model,
                "messages": [{"role": "user", "content": f"Request {i}: tell me a long story about the sea."}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": True,
            }

        await asyncio.gather(*(_one(client, body(i), stream) for i in range(min(4, requests))))  # warm-up

        async def guarded(i: int) -> None:
            nonlocal tokens, prompt_tokens, errors
            async with semaphore:
                try:
                    n, ttft, prompt = await _one(client, body(i), stream)
                except httpx.HTTPError:
                    errors += 1
                    return
                tokens += n
                prompt_tokens += prompt
                if ttft is not None:
                    ttfts.append(ttft)

        started = time.perf_counter()
        await asyncio.gather(*(guarded(i) for i in range(requests)))
        seconds = time.perf_counter() - started
    return LoadResult(
        system=system,
        mode="stream" if stream else "non-stream",
        requests=requests,
        concurrency=concurrency,
        output_tokens=tokens,
        seconds=round(seconds, 3),
        tokens_per_s=round(tokens / seconds, 1),
        ttft_p50_s=percentile(ttfts, 0.5),
        ttft_p99_s=percentile(ttfts, 0.99),
        errors=errors,
        prompt_tokens=prompt_tokens,
    )


def cpu_seconds(processes) -> dict[int, float]:
    """User plus system CPU-seconds of each `psutil.Process` still alive, by pid."""
    import psutil

    seconds = {}
    for p in processes:
        try:
            t = p.cpu_times()
            seconds[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return seconds


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU-seconds between two `cpu_seconds` readings (a process that started between counts whole)."""
    return sum(after.values()) - sum(before.get(pid, 0.0) for pid in after)


def wait_http(url: str, timeout: float, process=None) -> None:
    """Wait until `url` answers 200; give up early if the server `process` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def write_result(name: str, record: dict) -> None:
    """Print the result as one JSON line and append it to benchmarks/results/<name>.jsonl."""
    line = json.dumps({"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record})
    print(line)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{name}.jsonl", "a") as f:
        f.write(line + "\n")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Chat completions at a fixed concurrency; prints one JSON result.")
    parser.add_argument("url")
    parser.add_argument("model")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--system", default="")
    args = parser.parse_args()
    result = asyncio.run(
        run_load(
            args.url,
            args.model,
            system=args.system,
            requests=args.requests,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            stream=args.stream,
        )
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
