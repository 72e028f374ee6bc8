"""What a job's driver asks of its surroundings, for every kind of job: its config, the cluster,
the `JobTracker`, its claim on the job, and the one way a job is stopped.

A driver stops when its job is cancelled, whichever way that came: the tracker's cancel flag
(`POST .../cancel`, watched here) or `ray job stop` (SIGTERM). Both raise `Stopped` in the
driver's main thread, so each driver has one place that turns a stop into `cancelled`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from llamaray.api.limits import use_limits
from llamaray.config import PlatformConfig, with_config_file
from llamaray.jobs import tracker as tracking
from llamaray.store.storage import read_uri

RELATIVE = "file://./"
CANCEL_POLL_S = 0.5
SLOT_POLL_S = 1.0


class Stopped(Exception):
    """The job was cancelled: its tracker's flag was set, or `ray job stop` sent SIGTERM."""


def relative_urls_resolved(fields: Any, bases: list[Path]) -> Any:
    """`file://./x` in a job config is `x` under the job's working directory or, failing that,
    under the platform's root (the parent of its data dir, where `models/` is)."""
    if isinstance(fields, dict):
        return {key: relative_urls_resolved(value, bases) for key, value in fields.items()}
    if isinstance(fields, list):
        return [relative_urls_resolved(value, bases) for value in fields]
    if isinstance(fields, str) and fields.startswith(RELATIVE):
        relative = fields[len(RELATIVE) :]
        found = next((base / relative for base in bases if (base / relative).exists()), bases[0] / relative)
        return found.resolve().as_uri()
    return fields


def submission_id() -> str | None:
    """The Ray Jobs submission id, which the Jobs API hands the entrypoint in its job config."""
    config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))
    return config.get("metadata", {}).get("job_submission_id")


def standalone_platform(raw: dict[str, Any], deployment: str | None = None) -> dict[str, Any]:
    """With no platform running, the job config's `platform:` (or the deployment config that
    `--platform` names) says where records and weights are."""
    if deployment:
        args = with_config_file({"config_file": deployment, **(raw.get("platform") or {})})
    elif "platform" in raw:
        args = with_config_file(raw["platform"])
    else:
        raise SystemExit(
            "no llamaray platform runs on this cluster: give the config a `platform:` section "
            "or name a deployment config with --platform"
        )
    return PlatformConfig.model_validate(args).resolved().model_dump()


@dataclass
class DriverStart:
    """What a job's driver has once it holds its job."""

    request: Any
    platform: PlatformConfig
    tracker: Any
    dashboard_url: str | None


def start_driver(
    kind: str, argv: list[str] | None, request_type: type, what: Callable[[Any], str]
) -> DriverStart | int:
    """Reads `--config`, joins the cluster, finds the `JobTracker` (or starts one from the
    config's `platform:`), validates the `request:`, claims the job and starts watching for a
    cancel; an exit code when the request is invalid (2) or the job was cancelled before it
    started (0)."""
    from pydantic import ValidationError

    parser = argparse.ArgumentParser(description=f"Run a llamaray {kind} job on the Ray cluster.")
    parser.add_argument(
        "--config", required=True, help="YAML: `request:` (the HTTP request body), optional `platform:`"
    )
    parser.add_argument(
        "--platform",
        help="a deployment config (e.g. deployments/gpu.yaml) that says where records and weights are, "
        "when no platform runs on this cluster (a KubeRay RayJob's own cluster)",
    )
    args = parser.parse_args(argv)
    raw = yaml.safe_load(read_uri(args.config)) or {}

    import ray

    context = ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
    ray_job_id = submission_id() or ray.get_runtime_context().get_job_id()
    tracker = tracking.find_tracker() or tracking.tracker_actor(standalone_platform(raw, args.platform))
    platform = PlatformConfig.model_validate(ray.get(tracker.platform.remote()))
    use_limits(platform.limits)  # the request is checked as the gateway checked it
    fields = relative_urls_resolved(dict(raw.get("request") or {}), [Path.cwd(), Path(platform.data_dir).parent])
    fields.setdefault("job_uuid", f"{kind}-{ray_job_id}")
    try:
        request = request_type.model_validate(fields)
    except ValidationError as exc:
        print(f"invalid request in {args.config}:\n{exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_stopped)
    started = DriverStart(request, platform, tracker, context.dashboard_url)
    if not tracking.take_job(tracker, request.job_uuid, kind, what(request), ray_job_id):
        print(f"job {request.job_uuid} was cancelled before it started")
        return driver_exit(started, 0)
    _watch_cancel(tracker, request.job_uuid)
    try:
        _wait_for_slot(tracker, request.job_uuid, platform.limits.max_running_jobs)
    except BaseException as exc:
        if not is_stop(exc):
            raise
        print(f"job {request.job_uuid} was cancelled while it waited for a slot")
        return driver_exit(started, 0)
    return started


def driver_exit(started: DriverStart, code: int) -> int:
    """The driver's exit code, once its job is recorded as ended. Ray records a driver that
    exits 0 as SUCCEEDED; a cancelled job's driver first asks Ray Jobs to stop it, so Ray's
    status (`ray job status`, the dashboard) says STOPPED where the platform says cancelled."""
    import ray

    from llamaray.api.jobs import JobStatus

    record = ray.get(started.tracker.get.remote(started.request.job_uuid))
    ray_job_id = submission_id()
    if record["status"] != JobStatus.cancelled.value or not ray_job_id or not started.dashboard_url:
        return code
    from ray.job_submission import JobSubmissionClient

    url = started.dashboard_url if "://" in started.dashboard_url else f"http://{started.dashboard_url}"
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Ray's stop ends this process: nothing is left to do
    try:
        if JobSubmissionClient(url).stop_job(ray_job_id):
            time.sleep(60)
    except Exception as exc:  # the Jobs API unreachable: the job ends as Ray sees it, SUCCEEDED
        print(f"could not mark the Ray job stopped: {exc}", file=sys.stderr)
    return code


def _wait_for_slot(tracker, job_uuid: str, max_running: int) -> None:
    """Returns once the job holds one of `limits.max_running_jobs` slots; the job's log says
    where it stands in the queue meanwhile."""
    import ray

    told = 0
    while place := ray.get(tracker.take_slot.remote(job_uuid, max_running)):
        if place != told:
            line = f"queued: {max_running} jobs are running (limits.max_running_jobs); place {place} in the queue"
            ray.get(tracker.log.remote(job_uuid, [line]))
            told = place
        time.sleep(SLOT_POLL_S)


def _raise_stopped(*_: Any) -> None:
    raise Stopped()


def is_stop(exc: BaseException) -> bool:
    """A cancel, however it surfaced: `Stopped` raised from the signal handler while Ray's C++
    core was waiting comes back as a `SystemError` caused by it."""
    return isinstance(exc, (Stopped, KeyboardInterrupt)) or isinstance(exc.__cause__, Stopped)


def _watch_cancel(tracker, job_uuid: str) -> None:
    """A thread that turns the tracker's cancel flag into a SIGTERM to this process, the signal
    `ray job stop` sends, so the driver's main thread stops the same way for both."""
    import ray

    def watch() -> None:
        while True:
            try:
                if ray.get(tracker.cancel_requested.remote(job_uuid)):
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            except Exception:  # the tracker is restarting: ask again
                pass
            threading.Event().wait(CANCEL_POLL_S)

    threading.Thread(target=watch, name="llamaray-cancel-watch", daemon=True).start()
