"""Serving throughput and time to first token: llamaray against vLLM's own OpenAI server.

The same load (chat completions of exactly --max-tokens tokens, --concurrency at a time) goes,
one system after the other in one run, to
  1. `vllm serve` (vLLM's OpenAI server; the baseline),
  2. llamaray's `/v1/chat/completions` (Serve proxy -> Gateway -> LLMServer -> AsyncLLM),
  3. Ray Serve LLM (`ray.serve.llm.build_openai_app`),
all on the same tiny model, and prints tokens/s and TTFT p50/p99 with the ratio to vLLM.
Goal: llamaray at least 0.9 of vLLM's throughput at concurrency 32.

    python benchmarks/serving.py --concurrency 32 --max-tokens 64 --requests 256
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

from loadgen import LoadResult, as_dict, run_load, wait_http, write_result  # noqa: E402

MODEL_ID = "tiny-llama-chat"
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "gpu_memory_utilization": 0.3}
ENGINE_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "WARNING",
}


def measure(url: str, system: str, args) -> list[LoadResult]:
    results = []
    for stream in args.modes:
        result = asyncio.run(
            run_load(
                url,
                MODEL_ID,
                system=system,
                requests=args.requests,
                concurrency=args.concurrency,
                max_tokens=args.max_tokens,
                stream=stream,
            )
        )
        print(
            f"  {system:<14} {result.mode:<10} {result.tokens_per_s:>9.1f} tok/s  "
            f"ttft p50 {fmt(result.ttft_p50_s)} p99 {fmt(result.ttft_p99_s)}  errors {result.errors}",
            flush=True,
        )
        results.append(result)
    return results


def fmt(seconds: float | None) -> str:
    return "   -   " if seconds is None else f"{seconds:6.3f}s"


def bench_vllm(model_path: Path, args) -> list[LoadResult]:
    port = 8101
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_path),
        "--served-model-name",
        MODEL_ID,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--dtype",
        ENGINE["dtype"],
        "--enforce-eager",
        "--max-model-len",
        str(ENGINE["max_model_len"]),
        "--gpu-memory-utilization",
        str(ENGINE["gpu_memory_utilization"]),
        "--uvicorn-log-level",
        "warning",
    ]
    env = {**os.environ, **ENGINE_ENV}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")  # its API server runs the engine in a process of its own anyway
    with open(Path(tempfile.gettempdir()) / "bench-vllm-serve.log", "w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=300, process=server)
            return measure(f"http://127.0.0.1:{port}", "vllm serve", args)
        finally:
            server.terminate()
            server.wait(timeout=60)


def bench_llamaray(model_path: Path, args) -> list[LoadResult]:
    from ray import serve

    from llamaray.serve.app import build_app

    port = 8102
    config = {
        "data_dir": tempfile.mkdtemp(),
        "models": [
            {
                "model_id": MODEL_ID,
                "path": str(model_path),
                **ENGINE,
                "max_ongoing_requests": 256,
                "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
            }
        ],
    }
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="llamaray", route_prefix="/")
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=300)
        return measure(f"http://127.0.0.1:{port}", "llamaray", args)
    finally:
        serve.shutdown()


def bench_ray_serve_llm(model_path: Path, args) -> list[LoadResult]:
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    port = 8103
    llm_config = LLMConfig(
        model_loading_config={"model_id": MODEL_ID, "model_source": str(model_path)},
        accelerator_config={"kind": "cpu"},
        engine_kwargs=dict(ENGINE),
        runtime_env={"env_vars": ENGINE_ENV},
        deployment_config={
            "ray_actor_options": {"num_cpus": 0},
            "max_ongoing_requests": 256,
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
        },
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_openai_app({"llm_configs": [llm_config]}), name="ray-serve-llm", route_prefix="/")
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=300)
        return measure(f"http://127.0.0.1:{port}", "ray.serve.llm", args)
    finally:
        serve.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--mode", choices=["stream", "non-stream", "both"], default="both")
    parser.add_argument("--systems", default="vllm,llamaray,ray-serve-llm", help="comma-separated subset to run")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.modes = {"stream": [True], "non-stream": [False], "both": [False, True]}[args.mode]
    systems = args.systems.split(",")

    from llamaray.models.tiny import build_tiny_models, tiny_models_present

    if not tiny_models_present(args.models_dir):
        build_tiny_models(args.models_dir)
    model_path = args.models_dir / "tiny-llama-chat"

    results: list[LoadResult] = []
    if "vllm" in systems:
        results += bench_vllm(model_path, args)
    if {"llamaray", "ray-serve-llm"} & set(systems):
        import ray

        from llamaray.serve.runtime import SERVE_ENV

        os.environ.update(SERVE_ENV)  # the same Serve settings for llamaray and ray.serve.llm
        ray.init(
            num_cpus=4,
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            if "llamaray" in systems:
                results += bench_llamaray(model_path, args)
            if "ray-serve-llm" in systems:
                results += bench_ray_serve_llm(model_path, args)
        finally:
            ray.shutdown()

    print(f"\nconcurrency {args.concurrency}, {args.requests} requests x {args.max_tokens} tokens")
    print(f"{'system':<14} {'mode':<10} {'tok/s':>9} {'ratio':>7} {'ttft p50':>9} {'ttft p99':>9}")
    baseline = {r.mode: r for r in results if r.system == "vllm serve"}
    for r in results:
        base = baseline.get(r.mode)
        ratio = f"{r.tokens_per_s / base.tokens_per_s:7.2f}" if base else "      -"
        print(
            f"{r.system:<14} {r.mode:<10} {r.tokens_per_s:>9.1f} {ratio} {fmt(r.ttft_p50_s):>9} {fmt(r.ttft_p99_s):>9}"
        )
    ratios = {
        f"{r.system}/{r.mode}": round(r.tokens_per_s / baseline[r.mode].tokens_per_s, 3)
        for r in results
        if r.mode in baseline and r.system != "vllm serve"
    }
    write_result(
        "serving",
        {
            "args": {k: v for k, v in vars(args).items() if k not in ("modes", "models_dir")},
            "results": [as_dict(r) for r in results],
            "throughput_ratio_vs_vllm": ratios,
        },
    )


if __name__ == "__main__":
    main()
