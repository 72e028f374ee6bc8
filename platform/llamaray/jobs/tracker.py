"""`JobTracker`: the one record of every job (post-training, and the data jobs of batch
completion and synthetic data generation), however it was submitted.

It runs as a detached named actor so the gateway, job drivers and Ray Train workers all reach
the same one, and it writes every change to the metadata store before answering, so a restart
of the actor or of the whole cluster loses nothing. A job found `scheduled` or `running` when a
fresh tracker starts was cut off by the cluster going down: it becomes `failed`, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

from llamaray.api.jobs import FINAL_STATUSES, JobStatus
from llamaray.config import RetentionSettings
from llamaray.datasets.registry import delete_dataset
from llamaray.errors import ConflictError, NotFoundError
from llamaray.jobs import retention
from llamaray.security.ownership import OWNER_KIND
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage

logger = logging.getLogger(__name__)

NAME = "llamaray-job-tracker"
NAMESPACE = "llamaray"
KIND = "job"
LOG_KIND = "job_log"
METRICS_KIND = "job_metrics"
# The kinds a store written before data jobs shared the tracker holds its jobs under.
OLD_KINDS = {"training_job": KIND, "training_log": LOG_KIND, "training_metrics": METRICS_KIND}
CLUSTER_STOPPED = "the Ray cluster stopped while the job was running"


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def stamp(line: str) -> str:
    return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} {line}"


class JobTracker:
    def __init__(self, platform: dict[str, Any]) -> None:
        self._platform = platform
        self._store = open_store(platform)
        self._lock = threading.RLock()  # the actor serves calls from several threads
        self._wake = threading.Event()  # set when a job ends: retention looks again
        self._pruning = threading.Lock()
        if not _restarted_actor():  # an actor Ray restarted in a live cluster: its jobs still run
            self._fail_interrupted()
        threading.Thread(target=self._prune_forever, name="llamaray-retention", daemon=True).start()

    @property
    def _retention(self) -> RetentionSettings:
        return RetentionSettings.model_validate(self._platform.get("retention") or {})

    @property
    def _storage(self) -> SharedStorage:
        data_dir = self._platform["data_dir"]
        return SharedStorage(self._platform.get("storage_path") or data_dir, data_dir)

    def _fail_interrupted(self) -> None:
        for job_uuid, record in self._store.list(KIND):
            if record["status"] not in FINAL_STATUSES:
                self.finish(job_uuid, JobStatus.failed.value, CLUSTER_STOPPED)

    def configure(self, platform: dict[str, Any]) -> None:
        """The running platform's config; jobs submitted with `ray job submit` read it here."""
        where = ("data_dir", "metadata_url")
        moved = any(platform.get(key) != self._platform.get(key) for key in where)
        self._platform = platform
        if moved:
            self._store = open_store(platform)
            self._fail_interrupted()

    def platform(self) -> dict[str, Any]:
        return self._platform

    def create(
        self, job_uuid: str, kind: str, algorithm: str, ray_job_id: str, warnings: list[str], call_id: str = ""
    ) -> None:
        """Registers a job. `call_id` (new for each submission) tells Ray's retry of this very call
        (the actor restarted before it answered: done already) from a second submission of the
        same uuid (a conflict)."""
        record = {
            "job_uuid": job_uuid,
            "kind": kind,
            "algorithm": algorithm,
            "status": JobStatus.scheduled.value,
            "ray_job_id": ray_job_id,
            "scheduled_at": now(),
            "started_at": None,
            "completed_at": None,
            "resources_allocated": None,
            "checkpoints": [],
            "warnings": warnings,
            "error": None,
            "cancel_requested": False,
            "call_id": call_id,
        }
        try:
            self._store.create(KIND, job_uuid, record)
        except ConflictError:
            if call_id and self.get(job_uuid).get("call_id") == call_id:
                return  # a retried call: done already
            raise ConflictError(f"job {job_uuid!r} already exists", "job_uuid") from None
        self.log(
            job_uuid, [f"scheduled {kind} ({algorithm}) as Ray job {ray_job_id}", *(f"warning: {w}" for w in warnings)]
        )

    def claim(self, job_uuid: str, ray_job_id: str) -> bool:
        """A driver takes its job; False when the job was cancelled before it started."""
        record = self.get(job_uuid)
        if record["ray_job_id"] != ray_job_id:
            raise ConflictError(f"job {job_uuid!r} belongs to Ray job {record['ray_job_id']}", "job_uuid")
        return record["status"] == JobStatus.scheduled.value and not record["cancel_requested"]

    def take_slot(self, job_uuid: str, max_running: int) -> int:
        """A claimed job's turn to run: 0 when it may start (it holds one of `max_running`
        slots), else its place in the queue (1: next). Drivers ask in turn; the queue is in the
        order they first asked, and a job keeps its slot until it ends."""
        with self._lock:
            records = [r for r in self.jobs() if r["status"] not in FINAL_STATUSES]
            record = next((r for r in records if r["job_uuid"] == job_uuid), None)
            if record is None or record.get("slot") or record["status"] == JobStatus.running.value:
                return 0  # ended (the driver learns so next) or running already
            if not record.get("queued_at"):
                record["queued_at"] = now()
                self._store.put(KIND, job_uuid, record)
            holding = sum(bool(r.get("slot")) or r["status"] == JobStatus.running.value for r in records)
            waiting = sorted(
                (r for r in records if not r.get("slot") and r["status"] == JobStatus.scheduled.value),
                key=lambda r: (r.get("queued_at") or "~", r["job_uuid"]),  # "~": after every timestamp
            )
            place = [r["job_uuid"] for r in waiting].index(job_uuid)
            if place < max_running - holding:
                self._update(job_uuid, slot=True)
                return 0
            return place - max(max_running - holding, 0) + 1

    def add_warnings(self, job_uuid: str, warnings: list[str]) -> None:
        record = self.get(job_uuid)
        new = [w for w in warnings if w not in record["warnings"]]
        if new:
            self._update(job_uuid, warnings=record["warnings"] + new)
            self.log(job_uuid, [f"warning: {w}" for w in new])

    def start(self, job_uuid: str, resources: dict[str, Any]) -> None:
        self._update(job_uuid, status=JobStatus.running.value, started_at=now(), resources_allocated=resources)

    def training_began(self, job_uuid: str) -> float:
        """The job's start-up: seconds from its submission to its first training step (a wait in
        the queue, logged apart, included), kept among its metrics and said in its log."""
        submitted = datetime.fromisoformat(self.get(job_uuid)["scheduled_at"])
        seconds = (datetime.now(timezone.utc) - submitted).total_seconds()
        self.report(
            job_uuid,
            [f"training began {seconds:.1f} s after the job was submitted"],
            [{"step": 0.0, "startup_seconds": seconds}],
        )
        return seconds

    def log(self, job_uuid: str, lines: list[str]) -> None:
        with self._lock:  # lines are numbered by count: two writers at once would collide
            self._store.append_lines(LOG_KIND, job_uuid, [stamp(line) for line in lines])

    def report(self, job_uuid: str, lines: list[str], metrics: list[dict[str, float]]) -> None:
        """What a worker saw since its last report: appended, never rewritten, so a long job's
        reports cost the same at its last step as at its first."""
        with self._lock:
            if lines:
                self._store.append_lines(LOG_KIND, job_uuid, [stamp(line) for line in lines])
            if metrics:
                self._store.append_lines(METRICS_KIND, job_uuid, [json.dumps(entry) for entry in metrics])

    def metrics(self, job_uuid: str) -> list[dict[str, float]]:
        return [json.loads(line) for line in self._store.read_lines(METRICS_KIND, job_uuid)]

    def add_checkpoint(self, job_uuid: str, iters: int, path: str) -> None:
        """Records a checkpoint; beyond `retention.checkpoints_to_keep`, the oldest are removed
        (from the record first, so none is listed after its files are gone)."""
        with self._lock:
            record = self.get(job_uuid)
            checkpoints = [c for c in record["checkpoints"] if c["iters"] != iters] + [{"iters": iters, "path": path}]
            dropped = retention.dropped_checkpoints(checkpoints, self._retention.checkpoints_to_keep)
            record["checkpoints"] = [c for c in checkpoints if c not in dropped]
            self._store.put(KIND, job_uuid, record)
        self.log(job_uuid, [f"checkpoint at step {iters}: {path}"])
        for checkpoint in dropped:
            retention.remove_checkpoint(self._storage, checkpoint)
            step = checkpoint["iters"]
            self.log(job_uuid, [f"removed the checkpoint at step {step} (retention.checkpoints_to_keep)"])

    def finish(
        self, job_uuid: str, status: str, error: str | None = None, request_error_param: str | None = None
    ) -> bool:
        """Ends a job once: the first final status wins (a cancel racing a crash stays cancelled).
        `request_error_param` marks a failure caused by the request (a prompt too long for the
        model), naming the field, so that a route waiting on the job answers a 400, not a 503."""
        with self._lock:
            record = self.get(job_uuid)
            if record["status"] in FINAL_STATUSES:
                return False
            record.update(status=status, completed_at=now(), error=error, request_error_param=request_error_param)
            self._store.put(KIND, job_uuid, record)
        self.log(job_uuid, [f"{status}" + (f": {error.strip().splitlines()[-1]}" if error else "")])
        self._wake.set()
        return True

    def prune(self) -> list[str]:
        """Removes the ended jobs past retention (`llamaray.jobs.retention`): files first, then
        the record, log, metrics and owner in one transaction; the ids removed."""
        data_dir = self._platform["data_dir"]
        settings = self._retention
        with self._pruning:  # one pass at a time: a job that ended wakes the thread meanwhile
            removed = retention.expired(self.jobs(), settings)
            for job_uuid in removed:
                self._remove(job_uuid, data_dir, settings)
        if removed:
            logger.info("retention removed %d ended jobs: %s", len(removed), ", ".join(removed))
        return removed

    def _remove(self, job_uuid: str, data_dir: str, settings: RetentionSettings) -> None:
        record = self.get(job_uuid)
        retention.remove_files(data_dir, self._storage, job_uuid)
        if settings.delete_output_datasets and record.get("output_dataset_id"):
            try:
                delete_dataset(self._store, record["output_dataset_id"], self._storage)
            except NotFoundError:  # deleted already
                pass
        with self._lock:
            self._store.write_many(
                deletes=[(KIND, job_uuid), (OWNER_KIND, f"job/{job_uuid}")],
                deleted_lines=[(LOG_KIND, job_uuid), (METRICS_KIND, job_uuid)],
            )

    def _prune_forever(self) -> None:
        while True:
            try:
                self.prune()
            except Exception:  # the store busy or a file in use: the next pass tries again
                logger.exception("retention pass failed")
            self._wake.wait(self._retention.interval_s)
            self._wake.clear()

    def annotate(self, job_uuid: str, fields: dict[str, Any]) -> None:
        """What a driver knows of its job that others read (a training job's base model)."""
        self._update(job_uuid, **fields)

    def set_output(self, job_uuid: str, output_dataset_id: str | None, statistics: dict[str, Any]) -> None:
        """A data job's result: the dataset it registered and its statistics."""
        self._update(job_uuid, output_dataset_id=output_dataset_id, statistics=statistics)

    def request_cancel(self, job_uuid: str) -> str:
        """Flags the job for its driver; a job no driver has started yet is cancelled at once."""
        record = self.get(job_uuid)
        if record["status"] in FINAL_STATUSES:
            return record["status"]
        self._update(job_uuid, cancel_requested=True)
        if record["status"] == JobStatus.scheduled.value:
            self.finish(job_uuid, JobStatus.cancelled.value)
            return JobStatus.cancelled.value
        self.log(job_uuid, ["cancel requested"])
        return record["status"]

    def cancel_requested(self, job_uuid: str) -> bool:
        return bool(self.get(job_uuid)["cancel_requested"])

    def get(self, job_uuid: str) -> dict[str, Any]:
        try:
            return self._store.get(KIND, job_uuid)
        except NotFoundError:
            raise NotFoundError(f"job {job_uuid!r} does not exist", "job_uuid") from None

    def jobs(self) -> list[dict[str, Any]]:
        return [record for _, record in self._store.list(KIND)]

    def logs(self, job_uuid: str, start: int = 0) -> list[str]:
        self.get(job_uuid)
        return self._store.read_lines(LOG_KIND, job_uuid, start)

    def _update(self, job_uuid: str, **fields: Any) -> None:
        with self._lock:
            record = self.get(job_uuid)
            record.update(fields)
            self._store.put(KIND, job_uuid, record)


class TrackerRecords:
    """Job records straight from the tracker actor (`JobRecords`), for a driver that needs
    another job's record (a data job generating with a training job's adapter)."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker

    async def record(self, job_uuid: str) -> dict[str, Any]:
        return await self.tracker.get.remote(job_uuid)

    async def jobs(self) -> list[dict[str, Any]]:
        return await self.tracker.jobs.remote()


def open_store(platform: dict[str, Any]) -> MetadataStore:
    """The platform's metadata store, its jobs migrated from the kinds of an older store."""
    store = MetadataStore.of_platform(platform["data_dir"], platform.get("metadata_url"))
    for old, new in OLD_KINDS.items():
        store.rename_kind(old, new)
    return store


def _restarted_actor() -> bool:
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().was_current_actor_reconstructed
    except Exception:  # not inside an actor
        return False


def tracker_actor(platform: dict[str, Any]):
    """The cluster's tracker, started on first use; a later caller gets the running one."""
    import ray

    actor_class = ray.remote(JobTracker).options(
        name=NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        # On the head node, which the autoscaler never removes (an idle worker node goes).
        resources={"node:__internal_head__": 0.001},
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=32,
    )
    return actor_class.remote(platform)


async def wait_final(tracker, job_uuid: str, timeout_s: float) -> str:
    """The job's status once it is final, or whatever it is after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    status = (await tracker.get.remote(job_uuid))["status"]
    while status not in FINAL_STATUSES and loop.time() < deadline:
        await asyncio.sleep(0.2)
        status = (await tracker.get.remote(job_uuid))["status"]
    return status


def take_job(tracker, job_uuid: str, kind: str, what: str, ray_job_id: str) -> bool:
    """A driver claims the job the gateway registered, or registers one that `ray job submit`
    started; False when the job was cancelled before it started."""
    import ray

    try:
        ray.get(tracker.get.remote(job_uuid))
    except NotFoundError:
        ray.get(tracker.create.remote(job_uuid, kind, what, ray_job_id, [], uuid.uuid4().hex))
        return True
    return ray.get(tracker.claim.remote(job_uuid, ray_job_id))


def find_tracker():
    """The running tracker, or None when no platform has started one."""
    import ray

    try:
        return ray.get_actor(NAME, namespace=NAMESPACE)
    except ValueError:
        return None
