"""The driver of one post-training job, run as a Ray Job's entrypoint.

`ray job submit -- python jobs/sft.py --config C.yaml` and `POST /post_training/*` both end
here, so a job behaves the same whichever way it came. The driver reads the request, registers
the job with the `JobTracker` (unless the gateway already did), hands the examples to Ray Train
through Ray's object store and runs `TorchTrainer.fit()` in a task of its own. A cancel (`Stopped`, see
`llamaray.jobs.driver`) cancels that task, which is what stops the workers and frees their
placement group in seconds.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Literal

from llamaray.api.jobs import JobStatus
from llamaray.api.post_training import PostTrainingRLHFRequest, PostTrainingSFTRequest
from llamaray.config import PLATFORM_PRIORITY_ENV, PlatformConfig
from llamaray.errors import LlamarayError
from llamaray.jobs.driver import driver_exit, is_stop, start_driver
from llamaray.store.storage import SharedStorage
from llamaray.training.plan import TrainingPlan

REQUESTS = {"sft": PostTrainingSFTRequest, "dpo": PostTrainingRLHFRequest}
# The workers' environment (ENV.md): Ray Train's print patch floods logs when `datasets` hashes.
# Ray Train records a run for the dashboard's Train tab (its attempts, workers and their logs)
# only with state tracking on, which is off by default.
WORKER_ENV = {
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",
    "TOKENIZERS_PARALLELISM": "false",
    **PLATFORM_PRIORITY_ENV,
}
ERROR_LINES = 15  # of a traceback, in the job's log


def main(kind: Literal["sft", "dpo"], argv: list[str] | None = None) -> int:
    started = start_driver(kind, argv, REQUESTS[kind], lambda request: request.algorithm.value)
    if isinstance(started, int):
        return started
    return driver_exit(started, run(kind, started.request, started.platform, started.tracker, started.dashboard_url))


def run(kind: str, request, platform: PlatformConfig, tracker, dashboard_url: str | None) -> int:
    import ray

    from llamaray.training.inputs import prepare
    from llamaray.training.models import served_model_id

    job_uuid = request.job_uuid

    def say(line: str) -> None:
        print(line, flush=True)
        ray.get(tracker.log.remote(job_uuid, [line]))

    fit = None
    # The process that will run fit() starts now, beside the request's checks, and imports Ray
    # Train (seconds): the same job and environment, so Ray hands `_fit` this warmed, idle worker,
    # and builds the trainer there. This driver imports neither torch nor transformers.
    env = _fit_env(dashboard_url)
    warm = ray.remote(_warm_up).options(num_cpus=0, runtime_env={"env_vars": env}).remote()
    try:
        inputs = prepare(kind, request, platform, extra_roots=[Path.cwd()])
        plan = inputs.plan
        plan.storage_token = SharedStorage.of_platform(platform).mark("jobs", job_uuid)
        ray.get(tracker.add_warnings.remote(job_uuid, plan.warnings))
        ray.get(tracker.annotate.remote(job_uuid, {"base_model": served_model_id(plan.model_path, platform)}))
        examples = ray.put({"train": inputs.train, "validation": inputs.validation})
        ray.get(warm)  # done by now, or sooner done than a fresh worker would be
        fit = (
            ray.remote(_fit)
            .options(num_cpus=0, runtime_env={"env_vars": env})
            .remote(plan.model_dump(), [examples], platform.model_dump())
        )
        stage = plan.deepspeed["zero_optimization"]["stage"] if plan.deepspeed else None
        resources = {**plan.workers.model_dump(), "strategy": plan.strategy, "deepspeed_zero_stage": stage}
        ray.get(tracker.start.remote(job_uuid, resources))
        workers = plan.workers
        say(
            f"started: {workers.num_workers} Ray Train workers "
            f"x {workers.cpus_per_worker} CPU, {workers.gpus_per_worker} GPU"
        )
    except LlamarayError as exc:
        ray.get(tracker.finish.remote(job_uuid, JobStatus.failed.value, f"{exc.param}: {exc.message}"))
        return 1
    except BaseException as exc:
        if not is_stop(exc):
            raise
        if fit is not None:  # cancelled before training started
            ray.cancel(fit)
        ray.get(tracker.finish.remote(job_uuid, JobStatus.cancelled.value))
        return 0
    status, error = _wait(fit)
    ray.get(tracker.finish.remote(job_uuid, status, error))
    if error:
        lines = error.rstrip().splitlines()[-ERROR_LINES:]
        ray.get(tracker.log.remote(job_uuid, lines))
        print(error, file=sys.stderr)
    return 1 if status == JobStatus.failed.value else 0


def _fit_env(dashboard_url: str | None) -> dict[str, str]:
    """The environment of the task that runs fit(); Ray Train's controller and workers inherit
    it. Known before the plan, so the warm-up task gets the same (the workers' OpenMP threads,
    which the plan decides, go through `RunConfig.worker_runtime_env`)."""
    env = dict(WORKER_ENV)
    if dashboard_url:  # Ray Train's placement-group cleaner asks the dashboard (ENV.md)
        env["RAY_API_SERVER_ADDRESS"] = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
    return env


def _warm_up() -> None:
    """What `_fit` imports to build the trainer (Ray Train and torch)."""
    import ray.train.torch  # noqa: F401


def _fit(plan: dict, examples: list, platform: dict) -> None:
    """Builds the trainer and runs it. `examples` holds the examples' object ref in a list, so
    Ray hands it on as a ref (each worker reads it) rather than as the examples themselves."""
    trainer = _torch_trainer(TrainingPlan.model_validate(plan), examples[0], PlatformConfig.model_validate(platform))
    trainer.fit()


def _train_loop(config: dict) -> None:
    """The recipe, imported where it runs: on the Ray Train workers, which need transformers,
    peft and TRL anyway, and not in the process that starts them."""
    from llamaray.training.recipe import train_loop_per_worker

    train_loop_per_worker(config)


def _torch_trainer(plan: TrainingPlan, examples, platform: PlatformConfig):
    """The examples go to the workers as one object in Ray's object store (the driver owns it
    for the job's life, a restarted worker reads it again), not as Ray Data datasets: a dataset
    per split started Ray Data's executor and a split coordinator in every run, seconds of
    start-up for rows every worker reads whole anyway."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    workers = plan.workers
    run_storage, run_filesystem = SharedStorage.of_platform(platform).ray_train()
    resources = {"CPU": workers.cpus_per_worker, **({"GPU": workers.gpus_per_worker} if workers.use_gpu else {})}
    return TorchTrainer(
        _train_loop,
        train_loop_config={"plan": plan.model_dump(), "examples": examples},
        scaling_config=ScalingConfig(
            num_workers=workers.num_workers,
            use_gpu=workers.use_gpu,
            resources_per_worker=resources,
            placement_strategy=platform.training.placement_strategy,
        ),
        torch_config=TorchConfig(backend="nccl" if workers.use_gpu else "gloo"),
        run_config=RunConfig(
            name=plan.job_uuid,
            storage_path=run_storage,
            storage_filesystem=run_filesystem,
            failure_config=FailureConfig(max_failures=plan.max_failures),
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(workers.threads)}},
        ),
    )


def _wait(fit) -> tuple[str, str | None]:
    """Waits for training; a cancel (`Stopped`) cancels the training task, then waits for it."""
    import ray

    cancelling = False
    while True:
        try:
            done, _ = ray.wait([fit], timeout=0.5)
        except BaseException as exc:
            if not is_stop(exc):
                raise
            ray.cancel(fit)
            cancelling = True
            continue
        if done:
            try:
                ray.get(fit)
            except Exception:
                if cancelling:
                    return JobStatus.cancelled.value, None
                return JobStatus.failed.value, traceback.format_exc()
            return JobStatus.completed.value, None


if __name__ == "__main__":  # python -m llamaray.training.job {sft,dpo} --config C.yaml
    sys.exit(main(sys.argv[1], sys.argv[2:]))
