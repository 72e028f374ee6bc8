"""Training throughput: the same LoRA SFT through llamaray's job path against plain TRL.

One run measures, one after the other, on the tiny model and the same synthetic dialogs:
  1. plain TRL `SFTTrainer` + peft in this process, no Ray, no DeepSpeed (the baseline),
  2. llamaray's job path (a Ray Job driver, Ray Train `TorchTrainer`, TRL under DeepSpeed
     ZeRO-2) with 1 worker holding all --cpus,
  3. the same with 2 workers, --cpus split between them,
and prints training tokens/s (input tokens over the trainer's own train_runtime, so start-up is
left out and reported apart) with the ratio to the baseline.
Goal: Ray Train with one worker at least 0.9 of the plain process.

    python benchmarks/training.py --steps 200 --batch-size 8 --cpus 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

from loadgen import write_result  # noqa: E402

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


def bench_plain(platform, dataset: dict, args) -> dict:
    """TRL and peft as a user would run them in one process; the same plan, minus DeepSpeed."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from llamaray.api.post_training import PostTrainingSFTRequest
    from llamaray.training.inputs import prepare

    torch.set_num_threads(int(args.cpus))
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
    return {"tokens": tokens, "train_runtime_s": metrics["train_runtime"], "wall_s": time.perf_counter() - started}


def bench_job(platform, service, tracker, dataset: dict, args, workers: int) -> dict:
    import ray

    from llamaray.api.post_training import PostTrainingSFTRequest

    job_uuid = f"bench-{workers}w-{int(time.time())}"
    body = request_body(job_uuid, dataset, args, workers, args.cpus / workers)
    started = time.perf_counter()
    asyncio.run(service.post_supervised_fine_tune(PostTrainingSFTRequest.model_validate(body)))
    while (record := ray.get(tracker.get.remote(job_uuid)))["status"] not in ("completed", "failed", "cancelled"):
        time.sleep(1)
    if record["status"] != "completed":
        raise SystemExit(f"{job_uuid} {record['status']}: {record['error']}")
    summary = next(
        m
        for m in reversed(ray.get(tracker.metrics.remote(job_uuid)))
        if "train_runtime" in m and "num_input_tokens_seen" in m
    )
    return {
        "tokens": summary["num_input_tokens_seen"],
        "train_runtime_s": summary["train_runtime"],
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8, help="global: split over the workers")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--log-every", type=int, default=1, help="steps between logged metrics, in every configuration")
    parser.add_argument("--cpus", type=int, default=2, help="cores for training, in every configuration")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    model = args.models / "tiny-llama-chat"
    if not model.exists():
        from llamaray.models.tiny import build_tiny_models

        build_tiny_models(args.models)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the jobs' python

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        dataset = write_dataset(work / "data" / "dialogs.jsonl", args.rows)
        platform = platform_config(work / "state", work / "data", model)
        results = {"plain TRL (baseline)": bench_plain(platform, dataset, args)}
        print(f"  plain TRL       done in {results['plain TRL (baseline)']['wall_s']:.1f} s", flush=True)

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
        for workers in (1, 2):
            results[f"Ray Train, {workers} worker{'s' * (workers > 1)}"] = bench_job(
                platform, service, tracker, dataset, args, workers
            )
        ray.shutdown()

    baseline = results["plain TRL (baseline)"]
    base_rate = baseline["tokens"] / baseline["train_runtime_s"]
    print(f"\nLoRA SFT, {args.steps} steps x global batch {args.batch_size}, {args.cpus} cores, tiny model")
    print(f"  {'system':<22} {'tokens/s':>10} {'ratio':>7} {'train s':>8} {'wall s':>8}")
    record = {"steps": args.steps, "batch_size": args.batch_size, "cpus": args.cpus, "systems": {}}
    for name, result in results.items():
        rate = result["tokens"] / result["train_runtime_s"]
        print(
            f"  {name:<22} {rate:>10.0f} {rate / base_rate:>7.2f} "
            f"{result['train_runtime_s']:>8.1f} {result['wall_s']:>8.1f}"
        )
        record["systems"][name] = {**result, "tokens_per_s": rate, "ratio": rate / base_rate}
    write_result("training", record)


if __name__ == "__main__":
    main()
