"""The PostTraining API: checks a request, then runs it as a Ray Job; answers from `JobTracker`.

Everything that can be wrong with a request (an unknown model or dataset, missing columns, a
rank of 0, a module the model does not have) is found here, before a Ray Job or worker exists.
The job itself is the same driver that `ray job submit -- python jobs/sft.py` runs.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Literal

import yaml

from llamaray.api.post_training import (
    Checkpoint,
    PostTrainingJobArtifactsResponse,
    PostTrainingJobLogStream,
    PostTrainingJobStatus,
    PostTrainingJobStatusResponse,
    PostTrainingRLHFRequest,
    PostTrainingSFTRequest,
)
from llamaray.config import PlatformConfig
from llamaray.errors import EngineUnavailableError
from llamaray.training.inputs import prepare
from llamaray.training.job import WORKER_ENV
from llamaray.training.tracker import FINAL

FOLLOW_POLL_S = 0.5
CANCEL_GRACE_S = 15.0  # how long the driver gets to stop its workers before the Ray Job is stopped
RAY_JOB_ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}


class PostTrainingService:
    def __init__(self, platform: PlatformConfig, tracker) -> None:
        self.platform = platform
        self.tracker = tracker
        self._jobs_client = None

    async def post_supervised_fine_tune(self, request: PostTrainingSFTRequest) -> None:
        await self._submit("sft", request)

    async def post_preference_optimize(self, request: PostTrainingRLHFRequest) -> None:
        await self._submit("dpo", request)

    async def _submit(self, kind: Literal["sft", "dpo"], request: PostTrainingSFTRequest | PostTrainingRLHFRequest) -> None:
        inputs = await asyncio.to_thread(prepare, kind, request, self.platform)
        job_uuid = request.job_uuid
        await self.tracker.create.remote(job_uuid, kind, request.algorithm.value, job_uuid, inputs.plan.warnings)
        config = Path(self.platform.data_dir) / "jobs" / job_uuid / "job.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump({"request": request.model_dump(mode="json")}, sort_keys=False))
        entrypoint = f"{shlex.quote(sys.executable)} -m llamaray.training.job {kind} --config {shlex.quote(str(config))}"
        try:
            client = await self._client()
            await asyncio.to_thread(
                client.submit_job,
                entrypoint=entrypoint,
                submission_id=job_uuid,
                runtime_env={"env_vars": WORKER_ENV},
                metadata={"llamaray_job": kind, "algorithm": request.algorithm.value},
            )
        except Exception as exc:
            await self.tracker.finish.remote(job_uuid, PostTrainingJobStatus.failed.value, f"the Ray Jobs API refused the job: {exc}")
            raise EngineUnavailableError(f"could not submit the Ray job: {exc}") from None

    async def get_training_job_status(self, job_uuid: str) -> PostTrainingJobStatusResponse:
        record = await self._record(job_uuid)
        return _status(record, await self.tracker.metrics.remote(job_uuid))

    async def list_training_jobs(self) -> list[PostTrainingJobStatusResponse]:
        return [_status(record) for record in await self.tracker.jobs.remote()]

    async def get_training_job_logstream(self, job_uuid: str) -> PostTrainingJobLogStream:
        return PostTrainingJobLogStream(job_uuid=job_uuid, log_lines=await self.tracker.logs.remote(job_uuid))

    async def follow_training_job_logs(self, job_uuid: str) -> AsyncIterator[PostTrainingJobLogStream]:
        """The log so far, then each new batch of lines, until the job has ended."""
        await self.tracker.get.remote(job_uuid)  # a 404 before the stream starts
        return self._follow(job_uuid)

    async def _follow(self, job_uuid: str) -> AsyncIterator[PostTrainingJobLogStream]:
        read = 0
        while True:
            ended = (await self._record(job_uuid))["status"] in FINAL
            lines = await self.tracker.logs.remote(job_uuid, read)
            if lines:
                read += len(lines)
                yield PostTrainingJobLogStream(job_uuid=job_uuid, log_lines=lines)
            if ended:
                return
            await asyncio.sleep(FOLLOW_POLL_S)

    async def cancel_training_job(self, job_uuid: str) -> None:
        """Asks the driver to cancel its training task; stops the Ray Job if it does not answer."""
        status = await self.tracker.request_cancel.remote(job_uuid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_GRACE_S
        while status not in FINAL and loop.time() < deadline:
            await asyncio.sleep(0.2)
            status = (await self.tracker.get.remote(job_uuid))["status"]
        if status not in FINAL:
            record = await self.tracker.get.remote(job_uuid)
            client = await self._client()
            await asyncio.to_thread(client.stop_job, record["ray_job_id"])
            await self.tracker.finish.remote(job_uuid, PostTrainingJobStatus.cancelled.value)

    async def get_training_job_artifacts(self, job_uuid: str) -> PostTrainingJobArtifactsResponse:
        record = await self._record(job_uuid)
        return PostTrainingJobArtifactsResponse(job_uuid=job_uuid, checkpoints=[Checkpoint(**c) for c in record["checkpoints"]])

    async def _record(self, job_uuid: str) -> dict[str, Any]:
        """The tracker's record, corrected when its Ray Job ended without saying so (a driver
        killed by the OS or a `ray job stop --no-wait` of a driver that could not answer)."""
        record = await self.tracker.get.remote(job_uuid)
        if record["status"] == PostTrainingJobStatus.running.value:
            try:
                client = await self._client()
                info = await asyncio.to_thread(client.get_job_info, record["ray_job_id"])
            except Exception:
                return record
            if str(info.status) in RAY_JOB_ENDED:
                reason = f"the Ray job {record['ray_job_id']} ended ({info.status}) without reporting: {info.message}"
                await self.tracker.finish.remote(job_uuid, PostTrainingJobStatus.failed.value, reason)
                record = await self.tracker.get.remote(job_uuid)
        return record

    async def _client(self):
        if self._jobs_client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._jobs_client = await asyncio.to_thread(JobSubmissionClient)
            except Exception as exc:
                raise EngineUnavailableError(f"the Ray Jobs API is not reachable (is the dashboard running?): {exc}") from None
        return self._jobs_client


def _status(record: dict[str, Any], metrics: list[dict[str, float]] = ()) -> PostTrainingJobStatusResponse:
    return PostTrainingJobStatusResponse(
        job_uuid=record["job_uuid"],
        status=record["status"],
        scheduled_at=record["scheduled_at"],
        started_at=record["started_at"],
        completed_at=record["completed_at"],
        resources_allocated=record["resources_allocated"],
        checkpoints=[Checkpoint(**c) for c in record["checkpoints"]],
        metrics=list(metrics),
        warnings=record["warnings"],
        error=record["error"],
    )
