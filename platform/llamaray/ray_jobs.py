"""The Ray Jobs API as the platform's services use it: a job is a module's driver, run with
this interpreter, under a submission id that is the job's uuid, so `ray job status <uuid>`,
the dashboard's Jobs tab and our own routes all name it the same way."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from llamaray.config import PlatformConfig
from llamaray.errors import EngineUnavailableError

ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
RELATIVE = "file://./"


class RayJobs:
    def __init__(self, data_dir: str) -> None:
        self.data_dir = Path(data_dir)
        self._client = None

    async def submit(self, job_uuid: str, module: str, kind: str, config: dict[str, Any], **options: Any) -> None:
        """Writes the job's config under the data dir and starts `python -m module kind --config`."""
        path = self.data_dir / "jobs" / job_uuid / "job.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        entrypoint = f"{shlex.quote(sys.executable)} -m {module} {kind} --config {shlex.quote(str(path))}"
        client = await self.client()
        await asyncio.to_thread(client.submit_job, entrypoint=entrypoint, submission_id=job_uuid, **options)

    async def info(self, ray_job_id: str):
        client = await self.client()
        return await asyncio.to_thread(client.get_job_info, ray_job_id)

    async def stop(self, ray_job_id: str) -> None:
        client = await self.client()
        await asyncio.to_thread(client.stop_job, ray_job_id)

    async def record(self, tracker, job_uuid: str) -> dict[str, Any]:
        """The tracker's record of a job, corrected when its Ray Job ended without saying so (a
        driver killed by the OS, one that died before it started, or `ray job stop --no-wait`
        of a driver that could not answer)."""
        from llamaray.api.post_training import PostTrainingJobStatus
        from llamaray.training.tracker import FINAL

        record = await tracker.get.remote(job_uuid)
        if record["status"] not in FINAL:
            try:
                info = await self.info(record["ray_job_id"])
            except Exception:
                return record
            if str(info.status) in ENDED:
                reason = f"the Ray job {record['ray_job_id']} ended ({info.status}) without reporting: {info.message}"
                await tracker.finish.remote(job_uuid, PostTrainingJobStatus.failed.value, reason)
                record = await tracker.get.remote(job_uuid)
        return record

    async def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = await asyncio.to_thread(JobSubmissionClient)
            except Exception as exc:
                raise EngineUnavailableError(f"the Ray Jobs API is not reachable (is the dashboard running?): {exc}") from None
        return self._client


# What a job's driver asks of its surroundings.


def relative_urls_resolved(fields: Any, bases: list[Path]) -> Any:
    """`file://./x` in a job config is `x` under the job's working directory or, failing that,
    under the platform's root (the parent of its data dir, where `models/` is)."""
    if isinstance(fields, dict):
        return {key: relative_urls_resolved(value, bases) for key, value in fields.items()}
    if isinstance(fields, str) and fields.startswith(RELATIVE):
        relative = fields[len(RELATIVE) :]
        found = next((base / relative for base in bases if (base / relative).exists()), bases[0] / relative)
        return found.resolve().as_uri()
    return fields


def submission_id() -> str | None:
    """The Ray Jobs submission id, which the Jobs API hands the entrypoint in its job config."""
    config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))
    return config.get("metadata", {}).get("job_submission_id")


def standalone_platform(raw: dict[str, Any]) -> dict[str, Any]:
    """With no platform running, the job config's `platform:` says where records and weights are."""
    if "platform" not in raw:
        raise SystemExit("no llamaray platform runs on this cluster and the config has no `platform:` section")
    return PlatformConfig.model_validate(raw["platform"]).resolved().model_dump()


@dataclass
class DriverStart:
    """What a job's driver has once it holds its job."""

    request: Any
    platform: PlatformConfig
    tracker: Any
    dashboard_url: str | None


def start_driver(kind: str, argv: list[str] | None, request_type: type, what: Callable[[Any], str]) -> DriverStart | int:
    """Reads `--config`, joins the cluster, finds the `JobTracker` (or starts one from the
    config's `platform:`), validates the `request:` and claims the job; an exit code when the
    request is invalid (2) or the job was cancelled before it started (0)."""
    from pydantic import ValidationError

    from llamaray.training import tracker as tracking

    parser = argparse.ArgumentParser(description=f"Run a llamaray {kind} job on the Ray cluster.")
    parser.add_argument("--config", required=True, help="YAML: `request:` (the HTTP request body), optional `platform:`")
    args = parser.parse_args(argv)
    raw = yaml.safe_load(Path(args.config).read_text()) or {}

    import ray

    context = ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
    ray_job_id = submission_id() or ray.get_runtime_context().get_job_id()
    tracker = tracking.find_tracker() or tracking.tracker_actor(standalone_platform(raw))
    platform = PlatformConfig.model_validate(ray.get(tracker.platform.remote()))
    fields = relative_urls_resolved(dict(raw.get("request") or {}), [Path.cwd(), Path(platform.data_dir).parent])
    fields.setdefault("job_uuid", f"{kind}-{ray_job_id}")
    try:
        request = request_type.model_validate(fields)
    except ValidationError as exc:
        print(f"invalid request in {args.config}:\n{exc}", file=sys.stderr)
        return 2
    if not tracking.take_job(tracker, request.job_uuid, kind, what(request), ray_job_id):
        print(f"job {request.job_uuid} was cancelled before it started")
        return 0
    return DriverStart(request, platform, tracker, context.dashboard_url)
