"""Submitting, reading and cancelling jobs: what every job family's service does the same way.

`PostTrainingService` and `DataJobsService` each compose one `JobControl` and add only what is
theirs (their checks, their status type). A job is registered with the `JobTracker` before its
Ray Job exists, so it can be read (and cancelled) from the moment the route answers.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator, Collection, Sequence

from llamaray.api.jobs import FINAL_STATUSES, JobStatus
from llamaray.api.limits import current_limits
from llamaray.errors import EngineUnavailableError, NotFoundError, TooManyRequestsError
from llamaray.jobs.log_feed import LogFeeds
from llamaray.jobs.ray_jobs import ENDED, RayJobs
from llamaray.jobs.tracker import wait_final
from llamaray.security.ownership import Owners
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage

CANCEL_GRACE_S = 15.0  # how long a driver gets to stop its workers before its Ray Job is stopped
POLL_S = 0.5


class JobControl:
    def __init__(self, storage: SharedStorage, tracker, store: MetadataStore) -> None:
        self.tracker = tracker
        self.ray_jobs = RayJobs(storage)
        self.owners = Owners(store)
        self.log_feeds = LogFeeds(POLL_S)

    def _check_owner(self, job_uuid: str) -> None:
        self.owners.check("job", job_uuid, lambda: NotFoundError(f"job {job_uuid!r} does not exist", "job_uuid"))

    async def submit(
        self,
        job_uuid: str,
        kind: str,
        what: str,
        module: str,
        config: dict[str, Any],
        warnings: Sequence[str] = (),
        **options: Any,
    ) -> None:
        """Registers the job, then runs `python -m module kind --config` as its Ray Job; a job the
        Jobs API refused is recorded as failed and answered with a 503. Beyond
        `limits.max_active_jobs` jobs scheduled or running, a 429 (checked before each submit,
        so two at the same moment may both pass: a bound, not an exact count)."""
        await self._admit()
        await self.tracker.create.remote(job_uuid, kind, what, job_uuid, list(warnings), uuid.uuid4().hex)
        self.owners.claim("job", job_uuid)
        try:
            await self.ray_jobs.submit(job_uuid, module, kind, config, **options)
        except Exception as exc:
            await self.tracker.finish.remote(
                job_uuid, JobStatus.failed.value, f"the Ray Jobs API refused the job: {exc}"
            )
            raise EngineUnavailableError(f"could not submit the Ray job: {exc}") from None

    async def _admit(self) -> None:
        limit = current_limits().max_active_jobs
        active = [r for r in await self.tracker.jobs.remote() if r["status"] not in FINAL_STATUSES]
        if len(active) < limit:
            return
        # A driver that died without reporting still looks active: ask Ray before refusing.
        ended = await asyncio.gather(*(self._reconciled(r["job_uuid"]) for r in active))
        if sum(r["status"] not in FINAL_STATUSES for r in ended) >= limit:
            raise TooManyRequestsError(
                f"{limit} jobs are scheduled or running (limits.max_active_jobs); submit again when one has ended",
                "job_uuid",
                retry_after_s=30,
            )

    async def record(self, job_uuid: str) -> dict[str, Any]:
        """The tracker's record of a job, corrected when its Ray Job ended without saying so (a
        driver killed by the OS, one that died before it started, or `ray job stop --no-wait`
        of a driver that could not answer). Another key's job does not exist (a 404)."""
        self._check_owner(job_uuid)
        return await self._reconciled(job_uuid)

    async def record_of_kind(
        self, job_uuid: str, kinds: Collection[str], family: str, elsewhere: str
    ) -> dict[str, Any]:
        """`record`, for a route of one family of jobs: the tracker holds training and data jobs
        alike, and another family's job is not found here (a 404 that says where it is)."""
        record = await self.record(job_uuid)
        if record["kind"] not in kinds:
            raise NotFoundError(
                f"{job_uuid!r} is a {record['kind']} job, not a {family} job; see {elsewhere}", "job_uuid"
            )
        return record

    async def _reconciled(self, job_uuid: str) -> dict[str, Any]:
        record = await self.tracker.get.remote(job_uuid)
        if record["status"] not in FINAL_STATUSES:
            try:
                info = await self.ray_jobs.info(record["ray_job_id"])
            except Exception:
                return record
            if str(info.status) in ENDED:
                reason = f"the Ray job {record['ray_job_id']} ended ({info.status}) without reporting: {info.message}"
                await self.tracker.finish.remote(job_uuid, JobStatus.failed.value, reason)
                record = await self.tracker.get.remote(job_uuid)
        return record

    async def metrics(self, job_uuid: str) -> list[dict[str, float]]:
        self._check_owner(job_uuid)
        return await self.tracker.metrics.remote(job_uuid)

    async def logs(self, job_uuid: str, start: int = 0) -> list[str]:
        self._check_owner(job_uuid)
        return await self.tracker.logs.remote(job_uuid, start)

    async def jobs(self) -> list[dict[str, Any]]:
        return self.owners.only_visible("job", await self.tracker.jobs.remote(), lambda r: r["job_uuid"])

    async def follow_logs(self, job_uuid: str) -> AsyncIterator[list[str]]:
        """The log so far, then each new batch of lines, until the job has ended; one poller per
        job for all its followers here (`LogFeeds`)."""
        self._check_owner(job_uuid)

        async def poll(start: int) -> tuple[list[str], bool]:
            ended = (await self._reconciled(job_uuid))["status"] in FINAL_STATUSES
            return await self.tracker.logs.remote(job_uuid, start), ended

        return self.log_feeds.follow(job_uuid, poll)

    async def wait(self, job_uuid: str) -> dict[str, Any]:
        """The job's record once it has ended."""
        record = await self.record(job_uuid)
        while record["status"] not in FINAL_STATUSES:
            await asyncio.sleep(POLL_S)
            record = await self.record(job_uuid)
        return record

    async def cancel(self, job_uuid: str) -> None:
        """Flags the job: a job no driver has claimed is cancelled at once, and a running one's
        driver stops its work and records `cancelled`. A driver that has not done so within
        `CANCEL_GRACE_S` has its Ray Job stopped, and the job is recorded as cancelled."""
        self._check_owner(job_uuid)
        if await self.tracker.request_cancel.remote(job_uuid) in FINAL_STATUSES:
            return
        if await wait_final(self.tracker, job_uuid, CANCEL_GRACE_S) not in FINAL_STATUSES:
            record = await self.tracker.get.remote(job_uuid)
            await self.ray_jobs.stop(record["ray_job_id"])  # SIGTERM: the driver may still record it
            await wait_final(self.tracker, job_uuid, CANCEL_GRACE_S)
            await self.tracker.finish.remote(job_uuid, JobStatus.cancelled.value)  # a no-op if it did
