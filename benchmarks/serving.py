"""Serving throughput and time to first token: llamaray against vLLM's own OpenAI server, fairly.

One run starts every system side by side on the same tiny model, then measures them A/B
interleaved (each repetition in a rotated order), each cell after warm-up:
  - `vllm serve` (vLLM's OpenAI server) in two CPU layouts: its default (API server, engine core
    and a worker process) and the in-process executor (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, as
    llamaray's engines run); the faster of the two, per cell, is the baseline; both send
    --vllm-stream-interval tokens per streamed event (vLLM's `--stream-interval`; llamaray merges
    30 ms of deltas into one event), and the table shows the events per stream of each system;
  - llamaray as `make serve` starts it: `deployments/local.yaml`'s own config, the tiny model in
    its chat model's place (or, with `--topology gateway`, every model in a deployment of its own
    behind the gateway);
  - Ray Serve LLM's default app (`ray.serve.llm.build_openai_app`), and the same app in its
    direct-streaming mode.
Streaming cells are driven by vLLM's own client, `vllm bench serve` (random prompts, exactly
--max-tokens tokens each, `ignore_eos`); non-streaming ones by `loadgen.py`; both in processes of
their own, never in the Ray driver. Every system and every load generator runs at nice 0 (the
platform's processes are set to it, `PLATFORM_PRIORITY_ENV`; the output says what it saw).
Each cell records tokens/s, TTFT p50/p99, events per stream, the server's `usage.prompt_tokens`
per request (the same work on each side) and the CPU-seconds the system's process tree spent.
The table gives medians of the repetitions, their spread, and the ratio to the baseline.

    python benchmarks/serving.py --concurrency 32,128 --requests 1000 --repetitions 3

The Ray side runs behind Serve's HAProxy ingress, as the platform ships (`llamaray.serve.runtime`);
`--python-proxy` puts every Ray app behind Serve's Python proxy instead. Ray Serve LLM runs twice:
its default OpenAI app, and its direct-streaming mode (`LLMServer` itself the HTTP ingress).

The adapter column (`--adapter`): llamaray trains a LoRA adapter (rank 16, every attention and MLP
projection) with a real SFT job through its own API and serves it on the same replica; vLLM's
server serves a random adapter of the same shape (`--lora-modules`), the adapter's own baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).parent
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(HERE))

from loadgen import cpu_seconds, spent, wait_http, write_result  # noqa: E402

MODEL_ID = "tiny-llama-chat"
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048, "gpu_memory_utilization": 0.3}
LORA = {"max_loras": 4, "max_lora_rank": 16, "max_cpu_loras": 8}  # deployments/local.yaml's
ENGINE_ENV = {"VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
LLAMARAY_PORT = 8102


@dataclass
class System:
    name: str
    url: str
    model: str
    processes: Callable[[], list[psutil.Process]]  # its process tree, for CPU-seconds
    baseline: bool = False  # a `vllm serve` layout
    cells: list[dict] = field(default_factory=list)


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def niceness(processes: list[psutil.Process]) -> list[int]:
    seen = set()
    for p in processes:
        try:
            seen.add(p.nice())
        except psutil.NoSuchProcess:
            pass
    return sorted(seen)


def run_cell(system: System, args, concurrency: int, stream: bool, rep: int, model_path: Path) -> dict:
    """One cell: the load from a process of its own, the system's CPU-seconds around it."""
    out = Path(tempfile.mkdtemp(prefix="bench-cell-")) / "summary.json"
    if stream:
        cmd = [
            sys.executable,
            str(HERE / "vllm_bench.py"),
            "--summary-json",
            str(out),
            "--backend",
            "openai-chat",
            "--base-url",
            system.url,
            "--endpoint",
            "/v1/chat/completions",
            "--model",
            system.model,
            "--tokenizer",
            str(model_path),
            "--dataset-name",
            "random",
            "--random-input-len",
            str(args.input_len),
            "--random-output-len",
            str(args.max_tokens),
            "--ignore-eos",
            "--temperature",
            "0",
            "--num-prompts",
            str(args.requests),
            "--max-concurrency",
            str(concurrency),
            "--num-warmups",
            str(args.warmups),
            "--seed",
            str(rep),
            "--disable-tqdm",
            "--save-detailed",  # keeps each stream's events in the result (summarised, not saved)
        ]
    else:
        cmd = [
            sys.executable,
            str(HERE / "loadgen.py"),
            system.url,
            system.model,
            "--requests",
            str(args.requests),
            "--concurrency",
            str(concurrency),
            "--max-tokens",
            str(args.max_tokens),
        ]
    before = cpu_seconds(system.processes())
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": ""})
    cpu = spent(before, cpu_seconds(system.processes()))
    if done.returncode != 0:
        raise RuntimeError(f"{system.name}: the load generator failed:\n{done.stderr[-3000:]}")
    if stream:
        r = json.loads(out.read_text())
        cell = {
            "tokens_per_s": r["output_throughput"],
            "ttft_p50_s": r["median_ttft_ms"] / 1000,
            "ttft_p99_s": r["p99_ttft_ms"] / 1000,
            "events_per_stream": r["events_per_stream"],
            "prompt_tokens_per_request": r["total_input_tokens"] / max(1, r["completed"]),
            "output_tokens": r["total_output_tokens"],
            "errors": r["failed"],
            "seconds": r["duration"],
        }
    else:
        r = json.loads(done.stdout.strip().splitlines()[-1])
        cell = {
            "tokens_per_s": r["tokens_per_s"],
            "ttft_p50_s": None,
            "ttft_p99_s": None,
            "events_per_stream": 1,
            "prompt_tokens_per_request": r["prompt_tokens"] / max(1, r["requests"] - r["errors"]),
            "output_tokens": r["output_tokens"],
            "errors": r["errors"],
            "seconds": r["seconds"],
        }
    cell.update(
        system=system.name,
        mode="stream" if stream else "non-stream",
        concurrency=concurrency,
        rep=rep,
        cpu_s=round(cpu, 2),
        cpu_s_per_1k_tokens=round(1000 * cpu / max(1, cell["output_tokens"]), 3),
    )
    print(
        f"  rep {rep} c={concurrency:<4} {cell['mode']:<10} {system.name:<22} {cell['tokens_per_s']:>8.1f} tok/s"
        f"  ttft p50 {fmt(cell['ttft_p50_s'])}  cpu {cell['cpu_s']:>6.1f}s  events/stream "
        f"{cell['events_per_stream']}  prompt tokens {cell['prompt_tokens_per_request']:.0f}  errors {cell['errors']}",
        flush=True,
    )
    return cell


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


def start_vllm(
    model_path: Path, name: str, port: int, env: dict[str, str], adapter: Path | None, stream_interval: int
) -> subprocess.Popen:
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
        "--disable-uvicorn-access-log",
        # Tokens per streamed event: llamaray merges 30 ms of deltas into one event (about 6 events
        # per 64 tokens here); vLLM sends every token unless told, so both layouts are told.
        "--stream-interval",
        str(stream_interval),
        # The same engine layout as llamaray's replica, which serves adapters (ModelConfig.lora).
        "--enable-lora",
        "--max-loras",
        str(LORA["max_loras"]),
        "--max-lora-rank",
        str(LORA["max_lora_rank"]),
        "--max-cpu-loras",
        str(LORA["max_cpu_loras"]),
        *(["--lora-modules", f"bench-adapter={adapter}"] if adapter else []),
    ]
    log = open(Path(tempfile.gettempdir()) / f"bench-{name.replace(' ', '-')}.log", "w")
    return subprocess.Popen(cmd, env={**os.environ, **ENGINE_ENV, **env}, stdout=log, stderr=subprocess.STDOUT)


def shipped_config(models_dir: Path, topology: str) -> dict:
    """deployments/local.yaml's application args as `make serve` runs them (its layout, its chat
    engine's settings, every other deployment), with the benchmark's model in the place of its chat
    model (SmolLM2 there) so that every system serves the same weights, and a data dir of its own."""
    serve_config = yaml.safe_load((ROOT / "deployments" / "local.yaml").read_text())
    config = serve_config["applications"][0]["args"]
    config["data_dir"] = tempfile.mkdtemp(prefix="bench-llamaray-")
    config["dataset_roots"] = []
    engine_model = config["gateway"]["engine_model"]
    # The tiny model's own entry goes; its adapters move to the engine that takes its id.
    moved = {k: v for m in config["models"] if m["model_id"] == MODEL_ID for k, v in m.get("adapters", {}).items()}
    config["models"] = [m for m in config["models"] if m["model_id"] != MODEL_ID]
    for model in config["models"]:
        if model["model_id"] == engine_model:
            model.update(model_id=MODEL_ID, path=MODEL_ID, prompt_format="auto")
            model["adapters"] = {**model.get("adapters", {}), **moved}
        model["path"] = str(models_dir / Path(model["path"]).name)
        model["adapters"] = {k: str(models_dir / Path(v).name) for k, v in model.get("adapters", {}).items()}
    config["gateway"]["engine_model"] = None if topology == "gateway" else MODEL_ID
    return config


def start_llamaray(models_dir: Path, topology: str) -> str:
    from ray import serve

    from llamaray.serve.app import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": LLAMARAY_PORT})
    serve.run(build_app(shipped_config(models_dir, topology)), name="llamaray", route_prefix="/")
    url = f"http://127.0.0.1:{LLAMARAY_PORT}"
    wait_http(f"{url}/ready", timeout=300)
    return url


def start_ray_serve_llm(model_path: Path, direct: bool = False) -> str:
    """Ray Serve LLM's OpenAI app: its default (an ingress deployment calling `LLMServer` through
    a handle), or `direct`, its direct-streaming mode (`RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING`:
    `LLMServer` is the HTTP ingress behind HAProxy, vLLM's own FastAPI app in the replica)."""
    from ray import serve
    from ray.llm._internal.serve.core.ingress import builder
    from ray.serve.llm import LLMConfig, build_openai_app

    llm_config = LLMConfig(
        model_loading_config={"model_id": MODEL_ID, "model_source": str(model_path)},
        accelerator_config={"kind": "cpu"},
        engine_kwargs=dict(ENGINE),
        runtime_env={"env_vars": {**ENGINE_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}},
        deployment_config={
            "ray_actor_options": {"num_cpus": 0},
            "max_ongoing_requests": 256,
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
        },
    )
    # Ray reads the switch once, at import; the builder's copy is what decides the app's shape.
    builder.RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING = direct
    name = "ray-serve-llm-direct" if direct else "ray-serve-llm"
    serve.run(build_openai_app({"llm_configs": [llm_config]}), name=name, route_prefix=f"/{name}")
    url = f"http://127.0.0.1:{LLAMARAY_PORT}/{name}"
    wait_http(f"{url}/v1/models", timeout=300)
    return url


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


def summarize(systems: list[System], args) -> dict:
    """Medians of the repetitions per (system, mode, concurrency); ratios to the faster `vllm serve`."""
    rows: dict[tuple, dict] = {}
    for system in systems:
        groups: dict[tuple, list[dict]] = {}
        for cell in system.cells:
            groups.setdefault((cell["mode"], cell["concurrency"]), []).append(cell)
        for (mode, concurrency), cells in groups.items():
            tps = [c["tokens_per_s"] for c in cells]
            ttfts = [c["ttft_p50_s"] for c in cells if c["ttft_p50_s"] is not None]
            rows[(system.name, mode, concurrency)] = {
                "system": system.name,
                "mode": mode,
                "concurrency": concurrency,
                "baseline": system.baseline,
                "tokens_per_s": round(statistics.median(tps), 1),
                "spread": [round(min(tps), 1), round(max(tps), 1)],
                "ttft_p50_s": round(statistics.median(ttfts), 4) if ttfts else None,
                "cpu_s_per_1k_tokens": round(statistics.median(c["cpu_s_per_1k_tokens"] for c in cells), 3),
                "events_per_stream": statistics.median(c["events_per_stream"] for c in cells),
                "prompt_tokens_per_request": round(statistics.median(c["prompt_tokens_per_request"] for c in cells), 1),
                "errors": sum(c["errors"] for c in cells),
                "repetitions": len(cells),
            }
    print(f"\n{args.requests} requests x {args.max_tokens} tokens per cell, medians of {args.repetitions} repetitions")
    print("(ratio: to the faster `vllm serve` layout in the same cell; an adapter's to vLLM serving an adapter)")
    header = f"{'system':<22} {'mode':<10} {'c':>4} {'tok/s':>8} {'spread':>15} {'ratio':>6} {'ttft p50':>9}"
    print(header + f" {'ttft/vllm':>9} {'cpu-s/1k tok':>12} {'events':>7} {'prompt':>6}")
    ratios = {}
    for (name, mode, concurrency), row in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        lora = name.endswith("+lora")
        bases = [
            r
            for r in rows.values()
            if r["baseline"]
            and r["mode"] == mode
            and r["concurrency"] == concurrency
            and r["system"].endswith("+lora") == lora
        ]
        base = max(bases, key=lambda r: r["tokens_per_s"]) if bases else None
        ratio = row["tokens_per_s"] / base["tokens_per_s"] if base else None
        ttft_ratio = (
            row["ttft_p50_s"] / base["ttft_p50_s"] if base and row["ttft_p50_s"] and base["ttft_p50_s"] else None
        )
        row["ratio"] = round(ratio, 3) if ratio else None
        row["ttft_ratio"] = round(ttft_ratio, 3) if ttft_ratio else None
        if base and not row["baseline"]:
            ratios[f"{name}/{mode}/c{concurrency}"] = row["ratio"]
        print(
            f"{name:<22} {mode:<10} {concurrency:>4} {row['tokens_per_s']:>8.1f} "
            f"{str(row['spread']):>15} {ratio or 0:>6.2f} {fmt(row['ttft_p50_s']):>9} {ttft_ratio or 0:>9.2f} "
            f"{row['cpu_s_per_1k_tokens']:>12.3f} {row['events_per_stream']:>7} "
            f"{row['prompt_tokens_per_request']:>6.0f}"
        )
    return {"rows": list(rows.values()), "ratio_to_vllm_serve": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="32,128", help="comma-separated")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--input-len", type=int, default=32, help="random prompt tokens (streaming cells)")
    parser.add_argument("--requests", type=int, default=1000, help="per cell, after the warm-up")
    parser.add_argument("--warmups", type=int, default=16)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--mode", choices=["stream", "non-stream", "both"], default="both")
    parser.add_argument(
        "--systems", default="vllm,llamaray,ray-serve-llm,ray-serve-llm-direct", help="comma-separated subset to run"
    )
    parser.add_argument("--topology", choices=["shipped", "gateway"], default="shipped", help="llamaray's")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--adapter", action="store_true", help="add the adapter columns")
    parser.add_argument("--vllm-stream-interval", type=int, default=8, help="vllm serve's --stream-interval")
    parser.add_argument(
        "--python-proxy", action="store_true", help="Serve's Python proxy instead of HAProxy (every Ray app)"
    )
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    modes = {"stream": [True], "non-stream": [False], "both": [False, True]}[args.mode]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    wanted = args.systems.split(",")

    from llamaray.models.tiny import build_tiny_models, tiny_models_present

    if not tiny_models_present(args.models_dir):
        build_tiny_models(args.models_dir)
    model_path = args.models_dir / "tiny-llama-chat"

    os.nice(0)  # this driver and the load generators it starts: nice 0, as every system below
    systems: list[System] = []
    servers: list[subprocess.Popen] = []
    adapter = random_adapter(model_path) if args.adapter else None
    try:
        if "vllm" in wanted:
            layouts = {
                "vllm serve": (8101, {}),
                "vllm serve (in-process)": (8104, {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}),
            }
            for name, (port, env) in layouts.items():
                server = start_vllm(model_path, name, port, env, adapter, args.vllm_stream_interval)
                servers.append(server)
                url = f"http://127.0.0.1:{port}"
                wait_http(f"{url}/v1/models", timeout=300, process=server)
                systems.append(System(name, url, MODEL_ID, lambda pid=server.pid: tree(pid), baseline=True))
                if adapter:
                    systems.append(
                        System(f"{name}+lora", url, "bench-adapter", lambda pid=server.pid: tree(pid), baseline=True)
                    )
        if {"llamaray", "ray-serve-llm", "ray-serve-llm-direct"} & set(wanted):
            import ray

            from llamaray.serve.runtime import serve_env

            os.environ.update(serve_env())  # where Ray starts: the same Serve settings and priority for both
            if args.python_proxy:
                os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
            # The adapter's training job is a Ray Job: its `python` must be this one.
            os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
            ray.init(
                num_cpus=4,  # ray.serve.llm's ingress asks for a CPU (ENV.md); the cores are the same 2
                _node_ip_address="127.0.0.1",
                include_dashboard="llamaray" in wanted and args.adapter,  # the Jobs API runs training
                log_to_driver=False,
                configure_logging=False,
            )

            def ray_tree() -> list[psutil.Process]:
                """The Ray cluster's processes (started by this driver; both apps' replicas), not the
                vLLM servers'; a cell's load generator has not started or has ended when it is read."""
                theirs = {p.pid for server in servers for p in tree(server.pid)}
                return [p for p in psutil.Process().children(recursive=True) if p.pid not in theirs]

            if "llamaray" in wanted:
                url = start_llamaray(args.models_dir, args.topology)
                label = "llamaray" if args.topology == "shipped" else "llamaray (gateway)"
                systems.append(System(label, url, MODEL_ID, ray_tree))
                if args.adapter:
                    adapter_id, first_token_s = train_adapter(url)
                    print(f"  adapter {adapter_id}: first token {first_token_s:.2f}s after its job completed")
                    ADAPTER_FIGURES["completed_to_first_token_s"] = round(first_token_s, 3)
                    systems.append(System(f"{label}+lora", url, adapter_id, ray_tree))
            if "ray-serve-llm" in wanted:
                systems.append(System("ray.serve.llm", start_ray_serve_llm(model_path), MODEL_ID, ray_tree))
            if "ray-serve-llm-direct" in wanted:
                url = start_ray_serve_llm(model_path, direct=True)
                systems.append(System("ray.serve.llm direct", url, MODEL_ID, ray_tree))

        for system in systems:
            print(f"{system.name}: nice {niceness(system.processes())}", flush=True)
        print(f"Ray's HTTP ingress: {'the Python proxy' if args.python_proxy else 'HAProxy'}", flush=True)
        for rep in range(args.repetitions):
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            for concurrency in concurrencies:
                for stream in modes:
                    for system in order:
                        system.cells.append(run_cell(system, args, concurrency, stream, rep, model_path))
        summary = summarize(systems, args)
        for key, value in ADAPTER_FIGURES.items():
            print(f"{key}: {value}")
        write_result(
            "serving",
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "priority": {s.name: niceness(s.processes()) for s in systems},
                **summary,
                "cells": [c for s in systems for c in s.cells],
                "adapter": ADAPTER_FIGURES,
            },
        )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
