"""Training throughput: the same LoRA SFT through llamaray's job path against plain TRL.

One run measures, A/B interleaved over --repetitions, on the tiny model and the same dialogs:
  1. plain TRL `SFTTrainer` + peft in this process, no Ray, no DeepSpeed (the baseline),
  2. llamaray's job path (a Ray Job driver, Ray Train `TorchTrainer`, TRL; one worker runs
     without DeepSpeed, as the platform runs it) with 1 worker holding all --cpus,
  3. the same with 2 workers, --cpus split between them (DDP for LoRA),
and prints the median training tokens/s (input tokens over the trainer's own train_runtime, so
start-up is left out and reported apart, as the seconds from submission to the first step) with
its spread, the ratio to the baseline, and the CPU-seconds each spent (this process for the
baseline; the Ray cluster's processes for a job). Everything runs at nice 0 (the output says so).
Goals: one worker at least 0.95 of the plain process; two at least 1.7x one where the cores allow.

    python benchmarks/training.py --steps 200 --batch-size 8 --cpus 2 --repetitions 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

import psutil  # noqa: E402

from loadgen import cpu_seconds, spent, write_result  # noqa: E402

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def write_dataset(path: Path, rows: int) -> dict:
    with path.open("w") as f:
        for i in range(rows):
            words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(24 + i % 16)]
            dialog = [
                {"role": "user", "content": f"Spell entry {i}."},
                {"role": "assistant", "content": " ".join(words)},
            ]
            f.write(json.dumps({"dialog": dialog}) + "\n")
    return {"columns": {"dialog": "dialog"}, "content_url": path.as_uri()}


def request_body(job_uuid: str, dataset: dict, args, workers: int, cpus_per_worker: float) -> dict:
    return {
        "job_uuid": job_uuid,
        "model": "tiny-llama-chat",
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
        "optimizer_config": {"optimizer_type": "adamw", "lr": 1e-3, "lr_min": 0.0, "weight_decay": 0.0},
        "training_config": {
            "n_epochs": 1000,
            "batch_size": args.batch_size // workers,
            "shuffle": True,
            "n_iters": args.steps,
            "enable_activation_checkpointing": False,
            "memory_efficient_fsdp_wrap": False,
            "fsdp_cpu_offload": False,
        },
        "resources": {"num_workers": workers, "cpus_per_worker": cpus_per_worker},
        "logger_config": {"log_every_n_steps": args.log_every},
    }


def platform_config(data_dir: Path, dataset_dir: Path, model: Path):
    from llamaray.config import PlatformConfig

    return PlatformConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "dataset_roots": [str(dataset_dir)],
            "models": [{"model_id": "tiny-llama-chat", "path": str(model)}],
        }
    ).resolved()


def ray_processes() -> list[psutil.Process]:
    """The Ray cluster this process started: its GCS, raylet, workers and their children."""
    return psutil.Process().children(recursive=True)


def bench_plain(platform, dataset: dict, args) -> dict:
    """TRL and peft as a user would run them in one process; the same plan, minus DeepSpeed."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from llamaray.api.post_training import PostTrainingSFTRequest
    from llamaray.training.inputs import prepare

    torch.set_num_threads(int(args.cpus))
    cpu_before = cpu_seconds([psutil.Process()])
    inputs = prepare(
        "sft", PostTrainingSFTRequest.model_validate(request_body("plain", dataset, args, 1, args.cpus)), platform
    )
    plan = inputs.plan
    from datasets import Dataset

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(plan.model_path, dtype=torch.float32),
            args=SFTConfig(output_dir=out, **{**plan.trainer_args, "include_num_input_tokens_seen": True}),
            train_dataset=Dataset.from_list(inputs.train),
            processing_class=AutoTokenizer.from_pretrained(plan.model_path),
            peft_config=LoraConfig(**plan.peft),
        )
        trainer.optimizer_cls_and_kwargs = (torch.optim.AdamW, {"lr": plan.trainer_args["learning_rate"]})
        metrics = trainer.train().metrics
        tokens = trainer.state.num_input_tokens_seen
    return {
        "tokens": tokens,
        "train_runtime_s": metrics["train_runtime"],
        "wall_s": time.perf_counter() - started,
        "cpu_s": spent(cpu_before, cpu_seconds([psutil.Process()])),
    }


def bench_job(platform, service, tracker, dataset: dict, args, workers: int) -> dict:
    import ray

    from llamaray.api.post_training import PostTrainingSFTRequest

    job_uuid = f"bench-{workers}w-{time.time_ns()}"
    body = request_body(job_uuid, dataset, args, workers, args.cpus / workers)
    before = cpu_seconds(ray_processes())
    started = time.perf_counter()
    asyncio.run(service.post_supervised_fine_tune(PostTrainingSFTRequest.model_validate(body)))
    while (record := ray.get(tracker.get.remote(job_uuid)))["status"] not in ("completed", "failed", "cancelled"):
        time.sleep(1)
    if record["status"] != "completed":
        raise SystemExit(f"{job_uuid} {record['status']}: {record['error']}")
    metrics = ray.get(tracker.metrics.remote(job_uuid))
    summary = next(m for m in reversed(metrics) if "train_runtime" in m and "num_input_tokens_seen" in m)
    wall = time.perf_counter() - started
    after = cpu_seconds(ray_processes())
    return {
        "tokens": summary["num_input_tokens_seen"],
        "train_runtime_s": summary["train_runtime"],
        "wall_s": wall,
        "startup_s": next(m["startup_seconds"] for m in metrics if "startup_seconds" in m),  # the job's own
        "cpu_s": spent(before, after),
        "strategy": (record["resources_allocated"] or {}).get("strategy"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8, help="global: split over the workers")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--log-every", type=int, default=1, help="steps between logged metrics, in every configuration")
    parser.add_argument("--cpus", type=int, default=2, help="cores for training, in every configuration")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    model = args.models / "tiny-llama-chat"
    if not model.exists():
        from llamaray.models.tiny import build_tiny_models

        build_tiny_models(args.models)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the jobs' python

    from llamaray.serve.runtime import serve_env

    os.environ.update(serve_env())  # Ray's workers at nice 0, as this process and the baseline
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        dataset = write_dataset(work / "data" / "dialogs.jsonl", args.rows)
        platform = platform_config(work / "state", work / "data", model)

        import ray

        from llamaray.jobs.tracker import tracker_actor
        from llamaray.store.metadata import MetadataStore
        from llamaray.training.service import PostTrainingService

        ray.init(
            num_cpus=args.cpus + 1,
            _node_ip_address="127.0.0.1",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
        )
        tracker = tracker_actor(platform.model_dump())
        store = MetadataStore.of_platform(platform.data_dir, platform.metadata_url)
        service = PostTrainingService(platform, tracker, store)
        systems = {
            "plain TRL (baseline)": lambda: bench_plain(platform, dataset, args),
            "Ray Train, 1 worker": lambda: bench_job(platform, service, tracker, dataset, args, 1),
            "Ray Train, 2 workers": lambda: bench_job(platform, service, tracker, dataset, args, 2),
        }
        runs: dict[str, list[dict]] = {name: [] for name in systems}
        names = list(systems)
        for rep in range(args.repetitions):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                result = systems[name]()
                runs[name].append(result)
                rate = result["tokens"] / result["train_runtime_s"]
                print(f"  rep {rep} {name:<22} {rate:>8.0f} tokens/s  cpu {result['cpu_s']:.1f} s", flush=True)
        nice = sorted({p.nice() for p in [psutil.Process(), *ray_processes()]})
        ray.shutdown()

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def rates(name: str) -> list[float]:
        return [r["tokens"] / r["train_runtime_s"] for r in runs[name]]

    base_rate = statistics.median(rates("plain TRL (baseline)"))
    print(f"\nLoRA SFT, {args.steps} steps x global batch {args.batch_size}, {args.cpus} cores, tiny model")
    print(f"medians of {args.repetitions} repetitions, A/B interleaved; every process at nice {nice}")
    print(f"  {'system':<22} {'tokens/s':>10} {'spread':>14} {'ratio':>7} {'start-up s':>10} {'cpu s':>7} strategy")
    record = {"steps": args.steps, "batch_size": args.batch_size, "cpus": args.cpus, "nice": nice, "systems": {}}
    for name in runs:
        rate = statistics.median(rates(name))
        spread = f"[{min(rates(name)):.0f}, {max(rates(name)):.0f}]"
        startup = median(name, "startup_s") if "startup_s" in runs[name][0] else None
        strategy = runs[name][0].get("strategy") or "-"
        print(
            f"  {name:<22} {rate:>10.0f} {spread:>14} {rate / base_rate:>7.2f} "
            f"{(f'{startup:.1f}' if startup is not None else '-'):>10} {median(name, 'cpu_s'):>7.1f} {strategy}"
        )
        record["systems"][name] = {"runs": runs[name], "tokens_per_s": rate, "ratio": rate / base_rate}
    one, two = (statistics.median(rates(f"Ray Train, {n}")) for n in ("1 worker", "2 workers"))
    print(f"  two workers / one: {two / one:.2f}")
    write_result("training", record)


if __name__ == "__main__":
    main()
