"""The training recipe each Ray Train worker runs: setup, model, data, train, checkpoint.

Every worker builds the same TRL trainer under the plan's DeepSpeed config; Ray Train has
already joined them in one torch.distributed group. Rank 0 reports log lines, metrics and
checkpoints to the `JobTracker`; every rank takes part in saving, since ZeRO-3 must gather
the sharded weights.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llamaray.jobs.tracker import NAME, NAMESPACE
from llamaray.store.storage import NODE_CACHE, PUBLISHED, SharedStorage, local_copy_of
from llamaray.training.examples import for_tokenizer
from llamaray.training.models import training_dtype
from llamaray.training.plan import TrainingPlan

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
PLOT = "plot.png"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray
    import ray.train
    import torch
    from transformers import AutoTokenizer

    # Setup: one thread per CPU the worker was given, and DeepSpeed's comm on Ray's process group.
    plan = TrainingPlan.model_validate(config["plan"])
    rank = ray.train.get_context().get_world_rank()
    storage = SharedStorage(plan.storage_path, plan.data_dir)
    if plan.storage_token:  # before any work: checkpoints written to a disk of this node alone would be lost
        storage.check_mark(plan.storage_token, "jobs", plan.job_uuid)
    torch.set_num_threads(plan.workers.threads)
    if plan.deepspeed is not None:  # on the process group Ray Train set up; DDP needs nothing more
        import deepspeed  # seconds to import: only where the plan uses it

        deepspeed.init_distributed(dist_backend="nccl" if plan.workers.use_gpu else "gloo")
    tracker = ray.get_actor(NAME, namespace=NAMESPACE) if rank == 0 else None
    os.environ.update(plan.tracker_env)  # TensorBoard, MLflow, W&B: TRL's callbacks read these (rank 0 logs)
    # The TRL config comes before the model: under ZeRO-3 it makes from_pretrained partition.
    args = _trl_config(plan)

    # Model: weights on an object store are downloaded to this node first
    stored = {key: getattr(plan, key) for key in ("model_path", "adapter_path") if getattr(plan, key)}
    plan = plan.model_copy(update={key: str(local_copy_of(uri, NODE_CACHE)) for key, uri in stored.items()})
    tokenizer = AutoTokenizer.from_pretrained(plan.adapter_path or plan.model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _model(plan)

    # Data: the examples are one object in Ray's object store, which every worker reads whole;
    # the trainer's distributed sampler gives each rank its share of every epoch.
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]
    examples = ray.get(config["examples"])
    train_set = _examples(examples["train"], adds_bos)
    eval_set = _examples(examples["validation"], adds_bos)

    # Train
    trainer = _trainer(plan, model, tokenizer, args, train_set, eval_set)
    progress = ProgressCallback(plan, trainer, tracker, storage)
    progress.in_ray_train = True
    trainer.add_callback(progress)
    if plan.load_in_4bit:  # TRL casts adapters over a 4-bit base to bf16; CPUs train in fp32
        for parameter in trainer.model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(training_dtype(plan.workers.use_gpu))
    progress.say(
        f"training {plan.algorithm} on {len(train_set)} examples, {plan.workers.num_workers} workers, {plan.strategy}"
    )
    if plan.load_in_4bit:
        import bitsandbytes

        quantized = sum(isinstance(m, bitsandbytes.nn.Linear4bit) for m in trainer.model.modules())
        progress.say(f"base weights in 4 bits: {quantized} bitsandbytes nf4 Linear4bit layers")
    resume = _last_trainer_state(args.output_dir, storage, plan.job_uuid)
    if resume:  # Ray Train replaced a lost worker and runs this again: go on from where it was
        progress.say(f"restarted after a worker was lost: resuming from step {resume.name.split('-')[-1]} ({resume})")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.evaluate()  # the validation loss, logged like a step

    # Checkpoint: the final weights, unless the last epoch's checkpoint already holds them.
    progress.checkpoint(trainer.state.global_step)
    progress.flush(force=True)  # the validation loss too, when no checkpoint was left to take
    progress.write_plot()
    if rank == 0 and not storage.local:  # the trackers' files join the job's artifacts
        for name in ("tensorboard", "mlflow", "wandb"):
            local = storage.workdir("jobs", plan.job_uuid, name)
            if local.is_dir():
                storage.publish(local, "jobs", plan.job_uuid, name)


def _last_trainer_state(output_dir: str, storage: SharedStorage, job_uuid: str) -> Path | None:
    """The trainer's latest saved state, if an earlier attempt left one: in the job's directory,
    or on an object store (published whole by every rank), downloaded into it."""
    from transformers.trainer_utils import get_last_checkpoint

    if not storage.local:
        step = storage.last_published_step(job_uuid)
        if step is not None:
            state = storage.local_copy(storage.uri("jobs", job_uuid, "trainer", f"checkpoint-{step}"))
            shutil.copytree(state, Path(output_dir) / state.name, dirs_exist_ok=True)  # ranks of one node alike
    found = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    return Path(found) if found else None


def _trl_config(plan: TrainingPlan):
    output_dir = str(Path(plan.checkpoint_dir).parent / "trainer")
    if plan.kind == "sft":
        from trl import SFTConfig

        return SFTConfig(output_dir=output_dir, deepspeed=plan.deepspeed, **plan.trainer_args)
    from trl import DPOConfig

    return DPOConfig(output_dir=output_dir, deepspeed=plan.deepspeed, **plan.trainer_args)


def _model(plan: TrainingPlan):
    from llamaray.training.models import load_causal_lm

    model = load_causal_lm(plan.model_path, plan.load_in_4bit, plan.workers.use_gpu)
    if plan.adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, plan.adapter_path, is_trainable=True)
    return model


def _examples(examples: list[dict[str, Any]], adds_bos: bool) -> Any:
    from datasets import Dataset

    return Dataset.from_list(for_tokenizer(examples, adds_bos))


def _trainer(plan: TrainingPlan, model, tokenizer, args, train_set, eval_set):
    import torch
    from peft import LoraConfig

    peft_config = LoraConfig(**plan.peft) if plan.peft else None
    common = dict(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if plan.kind == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(**common)
    else:
        from trl import DPOTrainer

        trainer = DPOTrainer(ref_model=None, **common)  # with peft, the base with the adapter off is the reference
    # The draft's optimizer by class (plain Adam has no `optim` name); DPOTrainer takes no such
    # argument, but both build their optimizer from this attribute of transformers' Trainer.
    trainer.optimizer_cls_and_kwargs = (
        getattr(torch.optim, OPTIMIZERS[plan.optimizer]),
        {"lr": plan.trainer_args["learning_rate"]},
    )
    return trainer


def _metric_gauges() -> dict[str, Any]:
    from ray.util.metrics import Gauge

    names = {
        "loss": "training loss of the last logged step",
        "learning_rate": "learning rate of the last logged step",
        "tokens_per_second": "training tokens per second since the last log",
        "startup_seconds": "seconds from the job's submission to its first training step",
    }
    return {
        key: Gauge(f"llamaray_training_{key}", description=text, tag_keys=("job_uuid",)) for key, text in names.items()
    }


class ProgressCallback(TrainerCallback):
    """Reports log lines, metrics and checkpoints to the tracker as the trainer makes them.

    Lines and metrics are sent at most every `FLUSH_S` seconds in one call, so reporting costs
    the training loop nothing however small its steps are.
    """

    FLUSH_S = 1.0

    def __init__(self, plan: TrainingPlan, trainer, tracker, storage: SharedStorage) -> None:
        self.plan = plan
        self.trainer = trainer
        self.tracker = tracker
        self.storage = storage
        self.saved: set[int] = set()
        self.last = (time.perf_counter(), 0)
        self.gauges = _metric_gauges() if tracker else {}
        self.lines: list[str] = []
        self.metrics: list[dict[str, float]] = []
        self.history: list[dict[str, float]] = []  # every entry, for the plot
        self.latest: dict[str, float] = {}  # each metric's last value
        self.flushed = time.perf_counter()
        self.in_ray_train = False  # set by the worker's loop: outside Ray Train there is nothing to report to

    def say(self, line: str) -> None:
        if self.tracker:
            print(line, flush=True)  # for `ray job logs` and the dashboard
            self.lines.append(line)
            self.flush()

    def flush(self, force: bool = False) -> None:
        """Sends what is buffered; a forced flush waits for it (the tracker serves calls in
        several threads, so only a finished call is sure to come before the next one)."""
        if (
            self.tracker
            and (self.lines or self.metrics)
            and (force or time.perf_counter() - self.flushed >= self.FLUSH_S)
        ):
            sent = self.tracker.report.remote(self.plan.job_uuid, self.lines, self.metrics)
            self.lines, self.metrics, self.flushed = [], [], time.perf_counter()
            if force:
                import ray

                ray.get(sent)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs:
            return
        entry = {"step": float(state.global_step), "max_steps": float(state.max_steps)}  # a follower's bar needs both
        entry.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        moment, tokens = time.perf_counter(), state.num_input_tokens_seen or 0
        if tokens > self.last[1]:
            entry["tokens_per_second"] = (tokens - self.last[1]) / (moment - self.last[0])
        self.last = (moment, tokens)
        self.latest.update(entry)  # what Ray Train gets with the next checkpoint
        if not self.tracker:
            return
        self.metrics.append(entry)
        self.history.append(entry)
        for key, gauge in self.gauges.items():
            if key in entry:
                gauge.set(entry[key], tags={"job_uuid": self.plan.job_uuid})
        shown = ", ".join(f"{k}={v:.4g}" for k, v in entry.items() if k not in ("step", "max_steps"))
        self.say(f"step {state.global_step}/{state.max_steps}: {shown}")

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        if self.tracker and state.global_step == 0:  # not again when a lost worker's run resumes
            import ray

            self.flush(force=True)  # the log keeps its order
            seconds = ray.get(self.tracker.training_began.remote(self.plan.job_uuid))
            self.gauges["startup_seconds"].set(seconds, tags={"job_uuid": self.plan.job_uuid})

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.flush(force=True)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        every = self.plan.checkpoint_every_n_steps
        if every and state.global_step % every == 0:
            self.checkpoint(state.global_step)

    def on_save(self, args, state, control, **kwargs) -> None:
        """On an object store, the trainer's state goes there too: a worker Ray Train starts on
        another node resumes from it. Every rank publishes what it wrote (ZeRO shards its
        optimizer); rank 0 marks the step whole once all have."""
        if self.storage.local:
            return
        import torch.distributed as dist

        name = f"checkpoint-{state.global_step}"
        if (Path(args.output_dir) / name).is_dir():  # every rank writes its RNG state there, ZeRO its shard
            self.storage.publish(Path(args.output_dir) / name, "jobs", self.plan.job_uuid, "trainer", name)
        if dist.is_initialized():
            dist.barrier()
        if not dist.is_initialized() or dist.get_rank() == 0:
            self.storage.write_bytes(b"", "jobs", self.plan.job_uuid, "trainer", name, PUBLISHED)

    def on_epoch_end(self, args, state, control, **kwargs) -> None:
        if not self.plan.checkpoint_every_n_steps and self.plan.trainer_args["max_steps"] <= 0:
            self.checkpoint(state.global_step)  # epochs bound the run: one checkpoint each

    def report_to_ray_train(self, metrics: dict[str, float], checkpoint: Path) -> None:
        """Each checkpoint, with the latest metrics, in Ray Train's own records (the dashboard's
        Train tab, `Result`). Every rank calls it at the same checkpoints (Ray Train pairs the
        calls across ranks); rank 0's metrics are kept. Only at checkpoints: each call is a
        barrier through Ray Train's controller that cost about 1.8 s here, so a call per logged
        step made training 20 times slower. Full weights are not handed over: Ray Train would
        copy them into its run directory, and they are in the job's already."""
        if not self.in_ray_train:
            return
        import ray.train

        handed = None
        if checkpoint is not None and self.tracker and self.plan.peft is not None:
            handed = ray.train.Checkpoint.from_directory(str(checkpoint))
        ray.train.report(metrics, checkpoint=handed, checkpoint_dir_name=checkpoint.name)

    def write_plot(self) -> None:
        """`plot.png` among the job's artifacts: its curves so far (rank 0)."""
        if self.tracker and self.history:
            from llamaray.training.plot import loss_plot

            self.storage.write_bytes(loss_plot(self.history, self.plan.job_uuid), "jobs", self.plan.job_uuid, PLOT)

    def checkpoint(self, step: int) -> None:
        """Saves the adapter (or the full weights) with the tokenizer: a directory that peft,
        transformers and vLLM load as it is. Every rank calls it; rank 0 writes."""
        if step in self.saved:
            return
        self.saved.add(step)
        name = f"iter-{step}"
        path = Path(self.plan.checkpoint_dir) / name
        self.trainer.save_model(str(path))
        self.report_to_ray_train({**self.latest, "step": float(step)}, path)  # the checkpoint's metrics
        if self.tracker:
            import ray

            uri = self.storage.publish(path, "jobs", self.plan.job_uuid, "checkpoints", name)
            self.flush(force=True)  # the log keeps its order: the steps before the checkpoint first
            ray.get(self.tracker.add_checkpoint.remote(self.plan.job_uuid, step, uri))
            self.write_plot()
