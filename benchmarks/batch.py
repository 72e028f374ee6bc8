"""Batch completion throughput: llamaray's Ray Data pipeline against vLLM alone and ray.data.llm.

One run measures, each in a fresh process one after the other, the same N prompts on the tiny
model, every completion exactly --max-tokens long (ignore_eos), greedy:
  1. vLLM's offline `LLM.generate` on all prompts in one process (the baseline),
  2. llamaray's pipeline (`llamaray.pipelines.pipeline.batch_dataset`: map_batches over an actor
     pool of vLLM engines, several batches in flight per engine), on a local Ray cluster,
  3. `ray.data.llm`'s vLLM processor on the same cluster size, tokenizer stages off (vLLM
     tokenizes inside the engine, as in 1 and 2).
It prints generated tokens/s end to end (engine start included, which is what a user waits for)
and over generation alone (from the engine being ready to the last answer; 1 and 2), with the
ratios. Goal: at least 0.9 of vLLM alone at N=2000, and ahead of ray.data.llm.

    python benchmarks/batch.py --prompts 2000 --max-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

from loadgen import write_result  # noqa: E402

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

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    settings = DataSettings(
        batch_size=args.batch_size, max_concurrent_batches=args.concurrent_batches, generator_num_cpus=args.cpus - 0.5
    )
    request = BatchJobRequest(model="tiny-llama-chat", content_batch=prompts(args.prompts))
    params = GenerationParams(max_tokens=args.max_tokens, ignore_eos=True)
    started = time.time()
    rows = batch_rows(request, None, None)  # inline prompts: no platform or store needed
    ds = generation_stage(ray.data.from_items(rows), model_config(args.model), params, [], settings, TimedGenerate)
    tokens, ready, done = 0, float("inf"), 0.0
    for row in ds.iter_rows():
        tokens += int(row["generated_tokens"])
        ready, done = min(ready, row["ready_at"]), max(done, row["done_at"])
    finished = time.time()
    return {"tokens": tokens, "wall_s": finished - started, "generation_s": done - ready}


def run_ray_data_llm(args) -> dict:
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from llamaray.config import CPU_ENGINE_ENV

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
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
    tokens = sum(int(row["tokens"]) for row in ds.iter_rows())
    return {"tokens": tokens, "wall_s": time.time() - started, "generation_s": None}


RUNS = {"direct": run_direct, "llamaray": run_llamaray, "ray_data_llm": run_ray_data_llm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrent-batches", type=int, default=8)
    parser.add_argument("--cpus", type=float, default=2)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "tiny-llama-chat")
    parser.add_argument("--only", choices=sorted(RUNS), help="run one variant in this process (used by the full run)")
    args = parser.parse_args()
    if not args.model.exists():
        from llamaray.models.tiny import build_tiny_models

        build_tiny_models(args.model.parent)
    if args.only:
        print("RESULT " + json.dumps(RUNS[args.only](args)), flush=True)
        return

    results = {}
    for name in RUNS:
        cmd = [sys.executable, __file__, "--only", name, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((text for text in out.stdout.splitlines() if text.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
        results[name] = json.loads(line[len("RESULT ") :])
        r = results[name]
        gen = f", {r['tokens'] / r['generation_s']:.0f} tok/s over generation" if r["generation_s"] else ""
        print(
            f"{name:13s} {r['tokens']} tokens in {r['wall_s']:.1f} s: "
            f"{r['tokens'] / r['wall_s']:.0f} tok/s end to end{gen}",
            flush=True,
        )
    tps = {name: r["tokens"] / r["wall_s"] for name, r in results.items()}
    gen = {name: r["tokens"] / r["generation_s"] for name, r in results.items() if r["generation_s"]}
    record = {
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size,
        "concurrent_batches": args.concurrent_batches,
        "cpus": args.cpus,
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


if __name__ == "__main__":
    main()
