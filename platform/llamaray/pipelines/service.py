"""Synthetic data generation inline on the Serve deployments when small, and the data jobs
(`llamaray.pipelines.job`) that run it, and batch completion, when large or when the prompts
are a dataset.

Every check a request can fail (unknown models, bad sampling, a missing dataset column, an
output dataset that exists) runs here first, so a bad request is a 4xx and never a failed job.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from llamaray.api.data_jobs import BatchJobRequest, DataJobKind, DataJobStatusResponse
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest, SyntheticDataGenerationResponse
from llamaray.config import PlatformConfig
from llamaray.datasets.readers import read_rows
from llamaray.datasets.registry import check_free, claim, registered
from llamaray.errors import DeadlineExceededError, EngineUnavailableError, InvalidRequestError
from llamaray.inference.adapters import AdapterCatalog
from llamaray.inference.registry import ModelRegistry
from llamaray.jobs.control import JobControl
from llamaray.pipelines import inputs
from llamaray.pipelines.sdg import Statistics, kept_indices, prompt_request, scored_answers, scored_prompt
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage

DATA_KINDS = {kind.value for kind in DataJobKind}


class DataJobsService:
    """Submits data jobs, answers their status, and runs the batch routes' jobs to their end."""

    def __init__(
        self, platform: PlatformConfig, tracker, store: MetadataStore, adapters: AdapterCatalog | None = None
    ) -> None:
        self.platform = platform
        self.store = store
        self.adapters = adapters
        self.jobs = JobControl(SharedStorage.of_platform(platform), tracker, store)
        self._leaving: set[asyncio.Task] = set()  # cancels of jobs whose client left, held till done

    async def submit(
        self, kind: DataJobKind, request: SyntheticDataGenerationRequest | BatchJobRequest, what: str
    ) -> str:
        job_uuid = request.job_uuid or f"{kind.value}-{uuid.uuid4().hex[:12]}"
        request = request.model_copy(
            update={"job_uuid": job_uuid, "output_dataset_id": request.output_dataset_id or job_uuid}
        )
        check_free(self.store, request.output_dataset_id)
        claim(self.store, request.output_dataset_id)  # what the job registers is its submitter's
        await self.jobs.submit(
            job_uuid,
            kind.value,
            what,
            "llamaray.pipelines.job",
            {"request": request.model_dump(mode="json", exclude_none=True)},
            metadata={"llamaray_job": kind.value},
        )
        return job_uuid

    async def submit_batch_job(self, request: BatchJobRequest) -> DataJobStatusResponse:
        await inputs.check_batch(request, self.platform, self.store, self.adapters)  # a 4xx now, not a failed job
        return await self.get_data_job_status(await self.submit(DataJobKind.batch, request, "batch job"))

    async def list_data_jobs(self) -> list[DataJobStatusResponse]:
        records = [record for record in await self.jobs.jobs() if record["kind"] in DATA_KINDS]
        return [self._status(record, await self.jobs.metrics(record["job_uuid"])) for record in records]

    async def get_data_job_status(self, job_uuid: str) -> DataJobStatusResponse:
        return self._status(await self._record(job_uuid), await self.jobs.metrics(job_uuid))

    @staticmethod
    def _status(record: dict[str, Any], metrics: list[dict[str, float]]) -> DataJobStatusResponse:
        job_uuid = record["job_uuid"]
        return DataJobStatusResponse(
            job_uuid=job_uuid,
            kind=record["kind"],
            status=record["status"],
            scheduled_at=record["scheduled_at"],
            started_at=record["started_at"],
            completed_at=record["completed_at"],
            output_dataset_id=record.get("output_dataset_id"),
            statistics=record.get("statistics") or {},
            progress=metrics[-1] if metrics else None,
            error=record["error"],
        )

    async def get_data_job_logs(self, job_uuid: str) -> list[str]:
        await self._record(job_uuid)
        return await self.jobs.logs(job_uuid)

    async def cancel_data_job(self, job_uuid: str) -> None:
        """The driver discards its output and records `cancelled` (see `JobControl.cancel`)."""
        await self._record(job_uuid)
        await self.jobs.cancel(job_uuid)

    async def run_batch(self, request: BatchJobRequest) -> list[dict[str, Any]]:
        """Runs a batch job to its end and answers its responses in the request's order."""
        await inputs.check_batch(request, self.platform, self.store, self.adapters)  # a 4xx now, not a failed job
        job_uuid = await self.submit(DataJobKind.batch, request, "batch route")
        deadline = self.platform.data.batch_route_timeout_s
        try:
            record = await asyncio.wait_for(self.jobs.wait(job_uuid), deadline)
        except asyncio.TimeoutError:
            await self.jobs.cancel(job_uuid)
            raise DeadlineExceededError(
                f"batch job {job_uuid} took longer than data.batch_route_timeout_s ({deadline:g} s) and was "
                "cancelled; submit large batches as jobs (/inference/batch_completion with a dataset, or jobs/batch.py)"
            ) from None
        except asyncio.CancelledError:  # the client left: nobody will read the answer
            self._leaving.add(task := asyncio.get_running_loop().create_task(self.jobs.cancel(job_uuid)))
            task.add_done_callback(self._leaving.discard)
            raise
        if record["status"] == "failed" and record.get("request_error_param"):  # the request's fault
            param = record["request_error_param"]
            if param == "request":  # the job could not tell which: the prompts it was given
                param = next(f for f in ("content_batch", "batch_dialogs", "dataset_id") if getattr(request, f))
            raise InvalidRequestError(f"batch job {job_uuid} failed: {record['error']}", param)
        if record["status"] != "completed":
            raise EngineUnavailableError(f"batch job {job_uuid} {record['status']}: {record['error']}")
        dataset = registered(self.store, record["output_dataset_id"])
        roots = [Path(root) for root in self.platform.dataset_roots]
        storage = SharedStorage.of_platform(self.platform)
        rows = await asyncio.to_thread(read_rows, dataset.content_url, roots, "content_url", None, storage)
        return [json.loads(row["response"]) for row in sorted(rows, key=lambda row: int(row["index"]))]

    async def _record(self, job_uuid: str) -> dict[str, Any]:
        return await self.jobs.record_of_kind(job_uuid, DATA_KINDS, "data", "/post_training/job/status")


class SyntheticDataGenerationService:
    def __init__(
        self, platform: PlatformConfig, registry: ModelRegistry, store: MetadataStore, jobs: DataJobsService
    ) -> None:
        self.platform = platform
        self.registry = registry
        self.store = store
        self.jobs = jobs

    async def post_generate(self, request: SyntheticDataGenerationRequest) -> SyntheticDataGenerationResponse:
        generation, reward = await inputs.check_sdg(request, self.platform, self.store, self.registry.adapters)
        size = len(request.prompts) * request.num_generations
        if request.dataset_id or request.run_as_job or size > self.platform.data.sdg_inline_max_generations:
            job_uuid = await self.jobs.submit(DataJobKind.sdg, request, f"filter {request.filtering_function.value}")
            statistics = {
                "mode": "job",
                "job_uuid": job_uuid,
                "status": "scheduled",
                "output_dataset_id": request.output_dataset_id or job_uuid,
                "status_url": f"/data_jobs/status?job_uuid={job_uuid}",
            }
            return SyntheticDataGenerationResponse(synthetic_data=[], statistics=statistics)

        started = time.monotonic()
        engine = (await self.registry.chat(request.model or generation.model.model_id)).client
        outs = await asyncio.gather(
            *(
                engine.generate(prompt_request([p], generation.params, f"prompts[{i}]", generation.prompt_format))
                for i, p in enumerate(request.prompts)
            )
        )
        scorer = self.registry.get(reward.model_id, "reward", "reward_scoring").client
        answers, scores = await scored_answers(scorer, [[p] for p in request.prompts], [out.sequences for out in outs])
        statistics, data = Statistics(extra={"mode": "inline"}), []
        for i, (prompt, group, group_scores, out) in enumerate(zip(request.prompts, answers, scores, outs)):
            kept = kept_indices(group_scores, request, i)
            statistics.add(group_scores, kept, sum(s.num_tokens for s in out.sequences))
            data.append(scored_prompt(prompt, group, group_scores, kept))
        return SyntheticDataGenerationResponse(
            synthetic_data=data, statistics=statistics.as_dict(time.monotonic() - started)
        )
