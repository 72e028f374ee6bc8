"""The Ray Jobs API as the platform's services use it: a job is a module's driver, run with
this interpreter, under a submission id that is the job's uuid, so `ray job status <uuid>`,
the dashboard's Jobs tab and our own routes all name it the same way."""

from __future__ import annotations

import asyncio
import shlex
import sys
from typing import Any

import yaml

from llamaray.errors import EngineUnavailableError
from llamaray.store.storage import SharedStorage

ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
# `ray job stop` sends SIGTERM, then SIGKILL after this many seconds (Ray's default is 3): a
# driver gets the time to stop its Ray Train workers or Ray Data actors and record `cancelled`.
STOP_ENV = {"RAY_JOB_STOP_WAIT_TIME_S": "30"}


class RayJobs:
    def __init__(self, storage: SharedStorage) -> None:
        self.storage = storage
        self._client = None

    async def submit(self, job_uuid: str, module: str, kind: str, config: dict[str, Any], **options: Any) -> None:
        """Writes the job's config into the shared storage (the driver may run on another node
        than this gateway) and starts `python -m module kind --config PATH-OR-URI`."""
        text = yaml.safe_dump(config, sort_keys=False).encode()
        uri = await asyncio.to_thread(self.storage.write_bytes, text, "jobs", job_uuid, "job.yaml")
        where = (
            self.storage.path("jobs", job_uuid, "job.yaml") if self.storage.local else self.storage.with_options(uri)
        )
        entrypoint = f"{shlex.quote(sys.executable)} -m {module} {kind} --config {shlex.quote(where)}"
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
