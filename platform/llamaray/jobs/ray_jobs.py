"""The Ray Jobs API as the platform's services use it: a job is a module's driver, run with
this interpreter, under a submission id that is the job's uuid, so `ray job status <uuid>`,
the dashboard's Jobs tab and our own routes all name it the same way."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from llamaray.errors import EngineUnavailableError

ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
# `ray job stop` sends SIGTERM, then SIGKILL after this many seconds (Ray's default is 3): a
# driver gets the time to stop its Ray Train workers or Ray Data actors and record `cancelled`.
STOP_ENV = {"RAY_JOB_STOP_WAIT_TIME_S": "30"}


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
        runtime_env = dict(options.pop("runtime_env", None) or {})
        runtime_env["env_vars"] = {**STOP_ENV, **(runtime_env.get("env_vars") or {})}
        client = await self.client()
        await asyncio.to_thread(
            client.submit_job, entrypoint=entrypoint, submission_id=job_uuid, runtime_env=runtime_env, **options
        )

    async def info(self, ray_job_id: str):
        client = await self.client()
        return await asyncio.to_thread(client.get_job_info, ray_job_id)

    async def stop(self, ray_job_id: str) -> None:
        client = await self.client()
        await asyncio.to_thread(client.stop_job, ray_job_id)

    async def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = await asyncio.to_thread(JobSubmissionClient)
            except Exception as exc:
                raise EngineUnavailableError(
                    f"the Ray Jobs API is not reachable (is the dashboard running?): {exc}"
                ) from None
        return self._client
