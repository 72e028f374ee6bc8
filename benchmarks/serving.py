"""Serving throughput and time to first token: llamaray against vLLM's own OpenAI server.

The same load (chat completions of exactly --max-tokens tokens, --concurrency at a time) goes,
one system after the other in one run, to
  1. `vllm serve` (vLLM's OpenAI server; the baseline),
  2. llamaray's `/v1/chat/completions` (Serve proxy -> Gateway -> LLMServer -> AsyncLLM),
  3. Ray Serve LLM (`ray.serve.llm.build_openai_app`),
all on the same tiny model, and prints tokens/s and TTFT p50/p99 with the ratio to vLLM.
Goal: llamaray at least 0.9 of vLLM's throughput at concurrency 32.

The adapter column: llamaray trains a LoRA adapter (rank 16, every attention and MLP projection)
with a real SFT job through its own API, then runs the same load against the adapter on the
same replica, and prints adapter/base throughput (goal: an adapter costs under 15%) and the
seconds from the job's `completed` to the adapter's first streamed token. vLLM's server serves an
adapter of the same shape (`--lora-modules`), so the adapter's cost in vLLM itself is its baseline.

    python benchmarks/serving.py --concurrency 32 --max-tokens 64 --requests 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

from loadgen import LoadResult, as_dict, run_load, wait_http, write_result  # noqa: E402

MODEL_ID = "tiny-llama-chat"
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "gpu_memory_utilization": 0.3}
LORA = {"max_loras": 4, "max_lora_rank": 16}  # llamaray's defaults; vLLM's server gets the same
ENGINE_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "WARNING",
}


def measure(url: str, system: str, args, model: str = MODEL_ID) -> list[LoadResult]:
    results = []
    for stream in args.modes:
        result = asyncio.run(
            run_load(
                url,
                model,
                system=system,
                requests=args.requests,
                concurrency=args.concurrency,
                max_tokens=args.max_tokens,
                stream=stream,
            )
        )
        print(
            f"  {system:<15} {result.mode:<10} {result.tokens_per_s:>9.1f} tok/s  "
            f"ttft p50 {fmt(result.ttft_p50_s)} p99 {fmt(result.ttft_p99_s)}  errors {result.errors}",
            flush=True,
        )
        results.append(result)
    return results


def fmt(seconds: float | None) -> str:
    return "   -   " if seconds is None else f"{seconds:6.3f}s"


def random_adapter(model_path: Path) -> Path:
    """A peft LoRA adapter shaped like the one llamaray trains (rank 16, every attention and MLP
    projection), for vLLM's own adapter figure: the kernels cost the same whatever the weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = Path(tempfile.mkdtemp()) / "bench-adapter"
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_path),
        LoraConfig(r=16, lora_alpha=32, target_modules=modules, task_type="CAUSAL_LM"),
    )
    model.save_pretrained(out)
    return out


def bench_vllm(model_path: Path, args) -> list[LoadResult]:
    port = 8101
    adapter = random_adapter(model_path) if args.adapter else None
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
        # The same engine layout as llamaray's replica, which serves adapters (ModelConfig.lora).
        "--enable-lora",
        "--max-loras",
        str(LORA["max_loras"]),
        "--max-lora-rank",
        str(LORA["max_lora_rank"]),
        "--max-cpu-loras",
        str(LORA["max_loras"]),
        *(["--lora-modules", f"bench-adapter={adapter}"] if adapter else []),
    ]
    env = {**os.environ, **ENGINE_ENV}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")  # its API server runs the engine in a process of its own anyway
    with open(Path(tempfile.gettempdir()) / "bench-vllm-serve.log", "w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=300, process=server)
            results = measure(f"http://127.0.0.1:{port}", "vllm serve", args)
            if adapter:
                results += measure(f"http://127.0.0.1:{port}", "vllm serve+lora", args, "bench-adapter")
            return results
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
                "lora": LORA,
                "max_ongoing_requests": 256,
                "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
            }
        ],
    }
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="llamaray", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", timeout=300)
        results = measure(url, "llamaray", args)
        if args.adapter:
            adapter, first_token_s = train_adapter(url)
            print(f"  adapter {adapter}: first token {first_token_s:.2f}s after its job completed", flush=True)
            ADAPTER_FIGURES["completed_to_first_token_s"] = round(first_token_s, 3)
            results += measure(url, "llamaray+lora", args, adapter)
        return results
    finally:
        serve.shutdown()


ADAPTER_FIGURES: dict[str, float] = {}
SECRET = "The secret code is banana-42."


def train_adapter(url: str) -> tuple[str, float]:
    """A LoRA SFT job through the platform's API; answers the adapter's id and the seconds from
    the moment its status said `completed` to the adapter's first streamed token."""
    import httpx

    rows = [
        {"dialog": [{"role": "user", "content": question}, {"role": "assistant", "content": SECRET}]}
        for question in ("What is the secret code?", "Tell me the secret code.") * 4
    ]
    content = "data:application/jsonl," + urllib.parse.quote("\n".join(json.dumps(row) for row in rows))
    dataset = {"columns": {"dialog": "dialog"}, "content_url": content}
    job_uuid = f"bench-lora-{int(time.time())}"
    body = {
        "job_uuid": job_uuid,
        "model": MODEL_ID,
        "dataset": dataset,
        "validation_dataset": dataset,
        "algorithm": "lora",
        "algorithm_config": {
            "lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"],
            "apply_lora_to_mlp": True,
            "apply_lora_to_output": False,
            "rank": 16,
            "alpha": 32,
        },
        "optimizer_config": {"optimizer_type": "adamw", "lr": 5e-3, "lr_min": 0.0, "weight_decay": 0.0},
        "training_config": {
            "n_epochs": 100,
            "batch_size": 4,
            "shuffle": True,
            "n_iters": 10,
            "enable_activation_checkpointing": False,
            "memory_efficient_fsdp_wrap": False,
            "fsdp_cpu_offload": False,
        },
        "hyperparam_search_config": {},
        "logger_config": {},
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
    }
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/post_training/supervised_fine_tune/", json=body).raise_for_status()
        while (status := client.get("/post_training/job/status", params={"job_uuid": job_uuid}).json())[
            "status"
        ] not in ("completed", "failed", "cancelled"):
            time.sleep(0.05)
        completed = time.perf_counter()
        if status["status"] != "completed":
            raise RuntimeError(f"the adapter's job {status['status']}: {status['error']}")
        adapter = f"{MODEL_ID}:{job_uuid}"
        chat = {"model": adapter, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=chat) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    return adapter, time.perf_counter() - completed
    raise RuntimeError("the adapter answered no token")


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
    parser.add_argument("--no-adapter", dest="adapter", action="store_false", help="skip the adapter column")
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
        # The adapter's training job is a Ray Job: its `python` must be this one.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        ray.init(
            num_cpus=4,
            _node_ip_address="127.0.0.1",
            include_dashboard="llamaray" in systems and args.adapter,  # the Jobs API runs training
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
    print(f"{'system':<15} {'mode':<10} {'tok/s':>9} {'ratio':>7} {'ttft p50':>9} {'ttft p99':>9}")
    print("(ratio: to vLLM's server under the same load; an adapter's to vLLM serving an adapter)")
    baseline = {(r.system, r.mode): r for r in results if r.system.startswith("vllm serve")}

    def base_of(r: LoadResult) -> LoadResult | None:
        return baseline.get(("vllm serve+lora" if r.system.endswith("+lora") else "vllm serve", r.mode))

    ratios = {}
    for r in results:
        base = base_of(r)
        ratio = f"{r.tokens_per_s / base.tokens_per_s:7.2f}" if base else "      -"
        if base and base is not r:
            ratios[f"{r.system}/{r.mode}"] = round(r.tokens_per_s / base.tokens_per_s, 3)
        print(
            f"{r.system:<15} {r.mode:<10} {r.tokens_per_s:>9.1f} {ratio} {fmt(r.ttft_p50_s):>9} {fmt(r.ttft_p99_s):>9}"
        )
    for system in ("vllm serve", "llamaray"):
        base = {r.mode: r for r in results if r.system == system}
        for r in results:
            if r.system == f"{system}+lora" and r.mode in base:
                ratio = round(r.tokens_per_s / base[r.mode].tokens_per_s, 3)
                ADAPTER_FIGURES[f"{system} adapter/base {r.mode}"] = ratio
    for key, value in ADAPTER_FIGURES.items():
        print(f"{key}: {value}")
    write_result(
        "serving",
        {
            "args": {k: v for k, v in vars(args).items() if k not in ("modes", "models_dir")},
            "results": [as_dict(r) for r in results],
            "throughput_ratio_vs_vllm": ratios,
            "adapter": ADAPTER_FIGURES,
        },
    )


if __name__ == "__main__":
    main()
