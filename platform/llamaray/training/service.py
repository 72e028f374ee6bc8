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
    PostTrainingJobStatusResponse,
    PostTrainingRLHFRequest,
    PostTrainingSFTRequest,
)
from llamaray.config import PlatformConfig
from llamaray.jobs.control import JobControl
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage
from llamaray.training.inputs import prepare
from llamaray.training.job import WORKER_ENV
from llamaray.training.plot import loss_plot

TRAINING_KINDS = ("sft", "dpo")  # the tracker also holds data jobs (llamaray.pipelines.job)


class PostTrainingService:
    def __init__(self, platform: PlatformConfig, tracker, store: MetadataStore) -> None:
        self.platform = platform
        self.storage = SharedStorage.of_platform(platform)
        self.jobs = JobControl(self.storage, tracker, store)

    async def post_supervised_fine_tune(self, request: PostTrainingSFTRequest) -> None:
        await self._submit("sft", request)

    async def post_preference_optimize(self, request: PostTrainingRLHFRequest) -> None:
        await self._submit("dpo", request)

    async def _submit(
        self, kind: Literal["sft", "dpo"], request: PostTrainingSFTRequest | PostTrainingRLHFRequest
    ) -> None:
        inputs = await asyncio.to_thread(prepare, kind, request, self.platform)
        await self.jobs.submit(
            request.job_uuid,
            kind,
            request.algorithm.value,
            "llamaray.training.job",
            {"request": request.model_dump(mode="json")},
            inputs.plan.warnings,
            runtime_env={"env_vars": WORKER_ENV},
            metadata={"llamaray_job": kind, "algorithm": request.algorithm.value},
        )

    async def get_training_job_status(self, job_uuid: str) -> PostTrainingJobStatusResponse:
        record = await self._record(job_uuid)
        return _status(record, await self.jobs.metrics(job_uuid))

    async def list_training_jobs(self) -> list[PostTrainingJobStatusResponse]:
        return [_status(record) for record in await self.jobs.jobs() if record["kind"] in TRAINING_KINDS]

    async def get_training_job_logstream(self, job_uuid: str) -> PostTrainingJobLogStream:
        await self._record(job_uuid)
        return PostTrainingJobLogStream(job_uuid=job_uuid, log_lines=await self.jobs.logs(job_uuid))

    async def follow_training_job_logs(self, job_uuid: str) -> AsyncIterator[PostTrainingJobLogStream]:
        """The log so far, then each new batch of lines, until the job has ended."""
        await self._record(job_uuid)  # a 404 (or a 429) before the stream starts
        return self._follow(job_uuid, await self.jobs.follow_logs(job_uuid))

    async def _follow(self, job_uuid: str, lines: AsyncIterator[list[str]]) -> AsyncIterator[PostTrainingJobLogStream]:
        async for batch in lines:
            yield PostTrainingJobLogStream(job_uuid=job_uuid, log_lines=batch)

    async def cancel_training_job(self, job_uuid: str) -> None:
        await self._record(job_uuid)
        await self.jobs.cancel(job_uuid)

    async def get_training_job_artifacts(self, job_uuid: str) -> PostTrainingJobArtifactsResponse:
        record = await self._record(job_uuid)
        return PostTrainingJobArtifactsResponse(
            job_uuid=job_uuid,
            checkpoints=[Checkpoint(**c) for c in record["checkpoints"]],
            files=await asyncio.to_thread(self._files, job_uuid),
        )

    async def _record(self, job_uuid: str) -> dict[str, Any]:
        return await self.jobs.record_of_kind(job_uuid, TRAINING_KINDS, "training", "/data_jobs/status")

    def _files(self, job_uuid: str) -> dict[str, str]:
        """The job's plot and trackers' files that exist, by name."""
        names = ("plot.png", "tensorboard", "mlflow", "wandb")
        uris = {name: self.storage.uri("jobs", job_uuid, name) for name in names}
        return {name.removesuffix(".png"): uri for name, uri in uris.items() if self.storage.exists(uri)}

    async def get_training_job_plot(self, job_uuid: str) -> bytes:
        """The job's loss, validation loss and learning rate so far, as a PNG."""
        await self._record(job_uuid)
        metrics = await self.jobs.metrics(job_uuid)
        return await asyncio.to_thread(loss_plot, metrics, job_uuid)


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
