"""`llamaray train|sdg|batch CONFIG`, `llamaray jobs ...` and `llamaray export JOB`: jobs submitted
to a running platform and followed there.

A CONFIG is the YAML the `jobs/` entrypoints take (`request:` is the route's body), so one file
serves `ray job submit` and the CLI alike. Its `file://./x` URLs name `x` under the directory
the command runs in (the platform reads them only inside its `dataset_roots`).
"""

from __future__ import annotations

import argparse
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Callable

import yaml

from llamaray.api.data_jobs import BatchJobRequest
from llamaray.api.post_training import PostTrainingRLHFRequest, PostTrainingSFTRequest
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest
from llamaray.cli.follow import follow_data_job, follow_training
from llamaray.cli.output import emit
from llamaray.client import LlamaRay
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.jobs.driver import relative_urls_resolved

TRAINING_COLUMNS = ["job_uuid", "status", "scheduled_at", "started_at", "completed_at", "error"]
DATA_COLUMNS = ["job_uuid", "kind", "status", "scheduled_at", "completed_at", "output_dataset_id", "error"]


def request_of(config: str, base: Path | None = None, job_uuid: str | None = None) -> dict[str, Any]:
    """The `request:` of a job config, its `file://./` URLs made absolute under `base` (the
    current directory), as a job's driver resolves them under its working directory; `job_uuid`
    (`--job-uuid`) names the job in place of the config's."""
    path = Path(config)
    if not path.is_file():
        raise SystemExit(f"no config file at {config}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise SystemExit(f"{config} has no `request:` mapping (the route's body)")
    request = relative_urls_resolved(raw["request"], [(base or Path.cwd()).resolve()])
    return {**request, "job_uuid": job_uuid} if job_uuid else request


def train(lr: LlamaRay, args: argparse.Namespace) -> int:
    body = request_of(args.config, job_uuid=args.job_uuid)
    body.setdefault("job_uuid", f"{'dpo' if args.dpo else 'sft'}-{uuid.uuid4().hex[:12]}")
    if args.dpo:
        lr.post_training.post_preference_optimize(PostTrainingRLHFRequest.model_validate(body))
    else:
        lr.post_training.post_supervised_fine_tune(PostTrainingSFTRequest.model_validate(body))
    return _submitted_training(lr, body["job_uuid"], args)


def sdg(lr: LlamaRay, args: argparse.Namespace) -> int:
    body = {**request_of(args.config, job_uuid=args.job_uuid), "run_as_job": True}
    answer = lr.synthetic_data_generation.post_generate(SyntheticDataGenerationRequest.model_validate(body))
    return _submitted_data_job(lr, (answer.statistics or {})["job_uuid"], args)


def batch(lr: LlamaRay, args: argparse.Namespace) -> int:
    job = lr.data_jobs.submit_batch_job(BatchJobRequest.model_validate(request_of(args.config, job_uuid=args.job_uuid)))
    return _submitted_data_job(lr, job.job_uuid, args)


def _submitted_training(lr: LlamaRay, job_uuid: str, args: argparse.Namespace) -> int:
    status = lr.post_training.get_training_job_status
    job = _submitted(lambda: status(job_uuid), follow_training, TRAINING_COLUMNS, args)
    if job.status.value == "completed" and not args.json and not args.detach:
        for checkpoint in lr.post_training.get_training_job_artifacts(job_uuid).checkpoints:
            print(f"checkpoint iters={checkpoint.iters}: {checkpoint.path}")
    return 0 if args.detach or job.status.value == "completed" else 1


def _submitted_data_job(lr: LlamaRay, job_uuid: str, args: argparse.Namespace) -> int:
    status = lr.data_jobs.get_data_job_status
    job = _submitted(lambda: status(job_uuid), follow_data_job, DATA_COLUMNS, args)
    return 0 if args.detach or job.status.value == "completed" else 1


def _submitted(status: Callable[[], Any], follow: Callable, columns: list[str], args: argparse.Namespace) -> Any:
    """The job's status now (`--detach`), or once it has ended, followed with a bar."""
    if args.detach:
        job = status()
    else:
        print(f"submitted {status().job_uuid}; following it (Ctrl-C stops following, not the job)", flush=True)
        job = follow(status)
    emit(job, args.json, columns)
    return job


def jobs_list(lr: LlamaRay, args: argparse.Namespace) -> int:
    training = [job.model_dump(mode="json") | {"kind": "training"} for job in lr.post_training.list_training_jobs()]
    data = [job.model_dump(mode="json") for job in lr.data_jobs.list_data_jobs()]
    rows = sorted(training + data, key=lambda job: job.get("scheduled_at") or "")
    emit(rows, args.json, ["job_uuid", "kind", "status", "scheduled_at", "started_at", "completed_at", "error"])
    return 0


def _kind(lr: LlamaRay, job_uuid: str) -> str:
    """`training` or `data`: the two families of jobs answer at routes of their own."""
    try:
        lr.post_training.get_training_job_status(job_uuid)
        return "training"
    except NotFoundError:
        lr.data_jobs.get_data_job_status(job_uuid)  # a 404 here names the job to the user
        return "data"


def jobs_status(lr: LlamaRay, args: argparse.Namespace) -> int:
    if _kind(lr, args.job_uuid) == "training":
        job = lr.post_training.get_training_job_status(args.job_uuid)
        emit(job, args.json, TRAINING_COLUMNS)
        if not args.json and job.metrics:
            last = job.metrics[-1]
            print("latest: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))
    else:
        emit(lr.data_jobs.get_data_job_status(args.job_uuid), args.json, DATA_COLUMNS)
    return 0


def jobs_follow(lr: LlamaRay, args: argparse.Namespace) -> int:
    """The live bar of `train`/`sdg`/`batch` for a job submitted any way; exits 0 once it completed."""
    if _kind(lr, args.job_uuid) == "training":
        job = follow_training(lambda: lr.post_training.get_training_job_status(args.job_uuid))
        emit(job, args.json, TRAINING_COLUMNS)
    else:
        job = follow_data_job(lambda: lr.data_jobs.get_data_job_status(args.job_uuid))
        emit(job, args.json, DATA_COLUMNS)
    return 0 if job.status.value == "completed" else 1


def jobs_logs(lr: LlamaRay, args: argparse.Namespace) -> int:
    if _kind(lr, args.job_uuid) == "data":
        _lines(lr.data_jobs.get_data_job_logs(args.job_uuid), args.json)
        return 0
    if args.follow:
        for batch in lr.post_training.follow_training_job_logs(args.job_uuid):
            for line in batch.log_lines:
                print(line, flush=True)
        return 0
    _lines(lr.post_training.get_training_job_logstream(args.job_uuid).log_lines, args.json)
    return 0


def _lines(lines: list[str], as_json: bool) -> None:
    if as_json:
        emit(lines, True)
    else:
        print("\n".join(lines))


def jobs_cancel(lr: LlamaRay, args: argparse.Namespace) -> int:
    if _kind(lr, args.job_uuid) == "training":
        lr.post_training.cancel_training_job(args.job_uuid)
    else:
        lr.data_jobs.cancel_data_job(args.job_uuid)
    print(f"cancel requested for {args.job_uuid}")
    return 0


def jobs_artifacts(lr: LlamaRay, args: argparse.Namespace) -> int:
    if _kind(lr, args.job_uuid) == "data":
        job = lr.data_jobs.get_data_job_status(args.job_uuid)
        emit({"job_uuid": job.job_uuid, "output_dataset_id": job.output_dataset_id}, args.json)
        return 0
    artifacts = lr.post_training.get_training_job_artifacts(args.job_uuid)
    if args.json:
        emit(artifacts, True)
        return 0
    rows = [{"artifact": f"checkpoint iters={c.iters}", "uri": c.path} for c in artifacts.checkpoints]
    emit(rows + [{"artifact": name, "uri": uri} for name, uri in artifacts.files.items()], False)
    return 0


def jobs_plot(lr: LlamaRay, args: argparse.Namespace) -> int:
    out = Path(args.out or f"{args.job_uuid}.png")
    out.write_bytes(lr.post_training.get_training_job_plot(args.job_uuid))
    print(f"wrote {out} (loss, validation loss and learning rate so far)")
    return 0


def export(lr: LlamaRay, args: argparse.Namespace) -> int:
    """Merges a job's adapter (its last checkpoint, or `--iters`) into full weights that vLLM and
    transformers load. Runs here, so the checkpoint must be on a path this machine reads."""
    checkpoints = lr.post_training.get_training_job_artifacts(args.job_uuid).checkpoints
    if not checkpoints:
        raise NotFoundError(f"job {args.job_uuid} has no checkpoint yet", "job_uuid")
    chosen = [c for c in checkpoints if args.iters is None or c.iters == args.iters]
    if not chosen:
        raise InvalidRequestError(f"job {args.job_uuid} has no checkpoint at {args.iters} iters", "iters")
    checkpoint = max(chosen, key=lambda c: c.iters)
    if not checkpoint.path.startswith("file://"):
        raise SystemExit(f"{checkpoint.path} is not on this machine: copy it here, then merge it from its directory")
    adapter = Path(urllib.parse.unquote(urllib.parse.urlparse(checkpoint.path).path))
    if not (adapter / "adapter_config.json").is_file():
        raise SystemExit(f"{adapter} holds full weights already (no adapter_config.json): load it as it is")
    from llamaray.training.merge import merge_adapter

    out = Path(args.out or f"exports/{args.job_uuid}").resolve()
    print(f"merging {adapter} into its base weights ...", flush=True)
    print(f"exported to {merge_adapter(str(adapter), str(out))}")
    return 0


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for name, func, what in (
        ("train", train, "fine-tune: submit a job config (jobs/configs/sft_*.yaml) and follow it"),
        ("sdg", sdg, "synthetic data: submit a job config (jobs/configs/sdg.yaml) and follow it"),
        ("batch", batch, "batch completion: submit a job config (jobs/configs/batch.yaml) and follow it"),
    ):
        command = commands.add_parser(name, help=what, parents=[common])
        command.add_argument("config", help="a job config: its `request:` is the route's body")
        command.add_argument("--detach", action="store_true", help="submit, print the job, do not follow it")
        command.add_argument("--job-uuid", help="the job's id (default: the config's, else a new one)")
        if name == "train":
            command.add_argument("--dpo", action="store_true", help="the config is a preference job (jobs/dpo.py's)")
        command.set_defaults(func=func)

    jobs = commands.add_parser("jobs", help="training and data jobs").add_subparsers(dest="jobs_command", required=True)
    jobs.add_parser("list", help="every job, oldest first", parents=[common]).set_defaults(func=jobs_list)
    for name, func, what in (
        ("status", jobs_status, "a job's status and latest metrics"),
        ("follow", jobs_follow, "a live bar until the job ends (exit 0 if it completed)"),
        ("logs", jobs_logs, "a job's log"),
        ("cancel", jobs_cancel, "stop a job (it records `cancelled`)"),
        ("artifacts", jobs_artifacts, "a training job's checkpoints and files, a data job's output dataset"),
        ("plot", jobs_plot, "a training job's curves so far, as a PNG"),
    ):
        command = jobs.add_parser(name, help=what, parents=[common])
        command.add_argument("job_uuid")
        if name == "plot":
            command.add_argument("--out", help="the PNG to write (default: JOB_UUID.png)")
        if name == "logs":
            command.add_argument("-f", "--follow", action="store_true", help="follow a training job's log to its end")
        command.set_defaults(func=func)

    command = commands.add_parser(
        "export", help="merge a job's adapter into full weights (peft) for vLLM and transformers", parents=[common]
    )
    command.add_argument("job_uuid")
    command.add_argument("--out", help="directory to write (default: exports/JOB_UUID)")
    command.add_argument("--iters", type=int, help="the checkpoint to merge (default: the last)")
    command.set_defaults(func=export)
