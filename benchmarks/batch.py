"""Batch completion throughput: llamaray's Ray Data pipeline against vLLM alone and ray.data.llm.

One run measures, each in a fresh process, A/B interleaved over --repetitions (the order rotated
each time), the same N prompts on the tiny model, every completion exactly --max-tokens long
(ignore_eos), greedy:
  1. vLLM's offline `LLM.generate` on all prompts in one process (the baseline),
  2. llamaray's pipeline (`llamaray.pipelines.pipeline.batch_dataset`: map_batches over an actor
     pool of vLLM engines, several batches in flight per engine), on a local Ray cluster,
  3. `ray.data.llm`'s vLLM processor on the same cluster size, tokenizer stages off (vLLM
     tokenizes inside the engine, as in 1 and 2).
It prints the medians and spread of generated tokens/s end to end (engine start included, which
is what a user waits for) and over generation alone (from the engine being ready to the last
answer; 1 and 2), with the ratios, and the CPU-seconds of each run's process tree (sampled every
0.2 s: the Ray sides' short-lived processes may be undercounted). Every process runs at nice 0;
the Ray drivers read their results with `iter_batches`, progress bars off.
Goal: at least 0.95 of vLLM alone at N=2000, and at least 1.5x ray.data.llm.

    python benchmarks/batch.py --prompts 2000 --max-tokens 64 --repetitions 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

from loadgen import cpu_seconds, write_result  # noqa: E402

TOPICS = "rivers mountains bread music clocks bridges gardens trains stars paper".split()


def prompts(n: int) -> list[str]:
    return [f"Write a short note about {TOPICS[i % len(TOPICS)]}, number {i}:" for i in range(n)]


def model_config(path: Path):
    from llamaray.config import ModelConfig

    return ModelConfig(
        model_id="tiny-llama-chat",
        path=str(path),
        dtype="float32",
        enforce_eager=True,
        max_model_len=1024,
        gpu_memory_utilization=0.3,
    )


def run_direct(args) -> dict:
    model = model_config(args.model)
    os.environ.update(model.engine_env())
    started = time.monotonic()  # importing vLLM is part of what a user of it waits for
    from vllm import LLM, SamplingParams

    llm = LLM(model=model.path, dtype="float32", enforce_eager=True, max_model_len=1024, gpu_memory_utilization=0.3)
    ready = time.monotonic()
    outs = llm.generate(
        prompts(args.prompts), SamplingParams(max_tokens=args.max_tokens, ignore_eos=True, temperature=0)
    )
    done = time.monotonic()
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"tokens": tokens, "wall_s": done - started, "generation_s": done - ready}


def run_llamaray(args) -> dict:
    import ray
    import ray.data

    from llamaray.api.data_jobs import BatchJobRequest
    from llamaray.config import DataSettings
    from llamaray.engines.protocol import GenerationParams
    from llamaray.pipelines.inputs import batch_rows
    from llamaray.pipelines.pipeline import Generate, generation_stage

    class TimedGenerate(Generate):
        """Generate, stamping when its engine was ready and when each batch finished."""

        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.ready_at = time.time()

        async def __call__(self, batch):
            batch = await super().__call__(batch)
            batch["ready_at"] = [self.ready_at] * len(batch["index"])
            batch["done_at"] = [time.time()] * len(batch["index"])
            return batch

    quiet_ray(args)
    settings = DataSettings(
        batch_size=args.batch_size, max_concurrent_batches=args.concurrent_batches, generator_num_cpus=args.cpus - 0.5
    )
    request = BatchJobRequest(model="tiny-llama-chat", content_batch=prompts(args.prompts))
    params = GenerationParams(max_tokens=args.max_tokens, ignore_eos=True)
    started = time.time()
    rows = batch_rows(request, None, None, None)  # inline completion prompts: no platform, store or chat format
    ds = generation_stage(ray.data.from_items(rows), model_config(args.model), params, [], settings, TimedGenerate)
    tokens, ready, done = 0, float("inf"), 0.0
    for batch in ds.iter_batches(batch_size=None):
        tokens += int(batch["generated_tokens"].sum())
        ready, done = min(ready, float(batch["ready_at"].min())), max(done, float(batch["done_at"].max()))
    finished = time.time()
    return {"tokens": tokens, "wall_s": finished - started, "generation_s": done - ready}


def run_ray_data_llm(args) -> dict:
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from llamaray.config import CPU_ENGINE_ENV

    quiet_ray(args)
    config = vLLMEngineProcessorConfig(
        model_source=str(args.model),
        engine_kwargs={"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "gpu_memory_utilization": 0.3},
        batch_size=args.batch_size,
        concurrency=1,
        max_concurrent_batches=args.concurrent_batches,
        placement_group_config={"bundles": [{"CPU": args.cpus - 0.5}]},  # ENV.md: else it waits for a GPU
        runtime_env={"env_vars": dict(CPU_ENGINE_ENV)},
        chat_template_stage={"enabled": False},
        tokenize_stage={"enabled": False},
        detokenize_stage={"enabled": False},
    )
    max_tokens = args.max_tokens
    processor = build_processor(
        config,
        preprocess=lambda row: {
            "prompt": row["prompt"],
            "sampling_params": {"max_tokens": max_tokens, "ignore_eos": True, "temperature": 0},
        },
        postprocess=lambda row: {"tokens": row["num_generated_tokens"]},
        preprocess_map_kwargs={"num_cpus": 0.1},  # ENV.md: whole-CPU side stages deadlock 2 cores
        postprocess_map_kwargs={"num_cpus": 0.1},
    )
    started = time.time()
    ds = processor(ray.data.from_items([{"prompt": p} for p in prompts(args.prompts)]))
    tokens = sum(int(batch["tokens"].sum()) for batch in ds.iter_batches(batch_size=None))
    return {"tokens": tokens, "wall_s": time.time() - started, "generation_s": None}


def quiet_ray(args) -> None:
    """A local Ray cluster whose workers run at nice 0, as the baseline does, and a Ray Data
    driver that draws no progress bars (their redraws cost the 2 cores the engine needs)."""
    import ray
    import ray.data

    from llamaray.config import PLATFORM_PRIORITY_ENV

    os.environ.update(PLATFORM_PRIORITY_ENV)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


RUNS = {"direct": run_direct, "llamaray": run_llamaray, "ray_data_llm": run_ray_data_llm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrent-batches", type=int, default=8)
    parser.add_argument("--cpus", type=float, default=2)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "tiny-llama-chat")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--only", choices=sorted(RUNS), help="run one variant in this process (used by the full run)")
    args = parser.parse_args()
    if not args.model.exists():
        from llamaray.models.tiny import build_tiny_models

        build_tiny_models(args.model.parent)
    if args.only:
        print("RESULT " + json.dumps(RUNS[args.only](args)), flush=True)
        return

    runs: dict[str, list[dict]] = {name: [] for name in RUNS}
    names = list(RUNS)
    for rep in range(args.repetitions):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            r = run_once(name)
            runs[name].append(r)
            gen = f", {r['tokens'] / r['generation_s']:.0f} over generation" if r["generation_s"] else ""
            print(
                f"  rep {rep} {name:13s} {r['tokens']} tokens in {r['wall_s']:.1f} s: "
                f"{r['tokens'] / r['wall_s']:.0f} tok/s end to end{gen}; cpu {r['cpu_s']:.0f} s",
                flush=True,
            )

    def rates(name: str, key: str) -> list[float]:
        return [r["tokens"] / r[key] for r in runs[name] if r[key]]

    tps = {name: statistics.median(rates(name, "wall_s")) for name in runs}
    gen = {name: statistics.median(rates(name, "generation_s")) for name in runs if rates(name, "generation_s")}
    print(f"\n{args.prompts} prompts x {args.max_tokens} tokens; medians of {args.repetitions} A/B interleaved runs")
    header = ("system", "end to end", "spread", "ratio", "generation", "ratio", "cpu s")
    print("  {:<13} {:>10} {:>12} {:>6} {:>10} {:>6} {:>6}".format(*header))
    for name in runs:
        spread = f"[{min(rates(name, 'wall_s')):.0f}, {max(rates(name, 'wall_s')):.0f}]"
        g = f"{gen[name]:>10.0f} {gen[name] / gen['direct']:>6.2f}" if name in gen else f"{'-':>10} {'-':>6}"
        cpu = statistics.median(r["cpu_s"] for r in runs[name])
        print(f"  {name:<13} {tps[name]:>10.0f} {spread:>12} {tps[name] / tps['direct']:>6.2f} {g} {cpu:>6.0f}")
    record = {
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size,
        "concurrent_batches": args.concurrent_batches,
        "cpus": args.cpus,
        "repetitions": args.repetitions,
        "runs": runs,
        "tokens_per_s_end_to_end": tps,
        "tokens_per_s_generation": gen,
        "ratio_end_to_end_vs_vllm": tps["llamaray"] / tps["direct"],
        "ratio_generation_vs_vllm": gen["llamaray"] / gen["direct"],
        "ratio_end_to_end_vs_ray_data_llm": tps["llamaray"] / tps["ray_data_llm"],
    }
    print(
        f"llamaray / vLLM alone: {record['ratio_end_to_end_vs_vllm']:.2f} end to end, "
        f"{record['ratio_generation_vs_vllm']:.2f} over generation; "
        f"llamaray / ray.data.llm: {record['ratio_end_to_end_vs_ray_data_llm']:.2f} end to end"
    )
    write_result("batch", record)


def run_once(name: str) -> dict:
    """One variant in a fresh process; its result, and the CPU-seconds of its process tree."""
    cmd = [sys.executable, __file__, "--only", name, *sys.argv[1:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen: dict[int, float] = {}

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                seen.update(cpu_seconds([root, *root.children(recursive=True)]))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.join()
    line = next((text for text in stdout.splitlines() if text.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{name} failed:\n{stdout[-3000:]}\n{stderr[-5000:]}")
    return {**json.loads(line[len("RESULT ") :]), "cpu_s": sum(seen.values())}


if __name__ == "__main__":
    main()
