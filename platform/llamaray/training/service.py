"""The PostTraining API: checks a request, then runs it as a Ray Job; answers from `JobTracker`.

Everything that can be wrong with a request (an unknown model or dataset, missing columns, a
rank of 0, a module the model does not have) is found here, before a Ray Job or worker exists.
The job itself is the same driver that `ray job submit -- python jobs/sft.py` runs.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Literal


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
from llamaray.ray_jobs import RayJobs
from llamaray.training.inputs import prepare
from llamaray.training.job import WORKER_ENV
from llamaray.training.tracker import FINAL, wait_final

FOLLOW_POLL_S = 0.5
TRAINING_KINDS = ("sft", "dpo")  # the tracker also holds data jobs (llamaray.data.job)
CANCEL_GRACE_S = 15.0  # how long the driver gets to stop its workers before the Ray Job is stopped


class PostTrainingService:
    def __init__(self, platform: PlatformConfig, tracker) -> None:
        self.platform = platform
        self.tracker = tracker
        self.ray_jobs = RayJobs(platform.data_dir)

    async def post_supervised_fine_tune(self, request: PostTrainingSFTRequest) -> None:
        await self._submit("sft", request)

    async def post_preference_optimize(self, request: PostTrainingRLHFRequest) -> None:
        await self._submit("dpo", request)

    async def _submit(self, kind: Literal["sft", "dpo"], request: PostTrainingSFTRequest | PostTrainingRLHFRequest) -> None:
        inputs = await asyncio.to_thread(prepare, kind, request, self.platform)
        job_uuid = request.job_uuid
        await self.tracker.create.remote(job_uuid, kind, request.algorithm.value, job_uuid, inputs.plan.warnings)
        try:
            await self.ray_jobs.submit(
                job_uuid,
                "llamaray.training.job",
                kind,
                {"request": request.model_dump(mode="json")},
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
        return [_status(record) for record in await self.tracker.jobs.remote() if record["kind"] in TRAINING_KINDS]

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
        if await self.tracker.request_cancel.remote(job_uuid) in FINAL:
            return
        if await wait_final(self.tracker, job_uuid, CANCEL_GRACE_S) not in FINAL:
            record = await self.tracker.get.remote(job_uuid)
            await self.ray_jobs.stop(record["ray_job_id"])
            await self.tracker.finish.remote(job_uuid, PostTrainingJobStatus.cancelled.value)

    async def get_training_job_artifacts(self, job_uuid: str) -> PostTrainingJobArtifactsResponse:
        record = await self._record(job_uuid)
        return PostTrainingJobArtifactsResponse(job_uuid=job_uuid, checkpoints=[Checkpoint(**c) for c in record["checkpoints"]])

    async def _record(self, job_uuid: str) -> dict[str, Any]:
        return await self.ray_jobs.record(self.tracker, job_uuid)


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
