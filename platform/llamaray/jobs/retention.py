"""What jobs leave behind, and when it goes (`retention:` in the config, `RetentionSettings`).

Jobs write records, log lines, metrics, a directory under the data dir (their config) and under
the shared storage (checkpoints, the trainer's state, Ray Train's run directory); without a
bound a busy platform fills its disk. The `JobTracker` asks here which ended jobs are past their
time and removes them, files first and records last: a crash in between leaves the record, and
the next pass removes the rest.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from llamaray.api.jobs import FINAL_STATUSES, JobStatus
from llamaray.config import RetentionSettings
from llamaray.store.storage import SharedStorage


def ended_at(record: dict[str, Any]) -> datetime:
    """When the job ended; a record without times (from an old store) counts as ending now."""
    stamp = record.get("completed_at") or record.get("scheduled_at")
    return datetime.fromisoformat(stamp) if stamp else datetime.now(timezone.utc)


def kept_whatever_age(record: dict[str, Any], settings: RetentionSettings) -> bool:
    """A completed training job whose adapter may be served."""
    completed = record["status"] == JobStatus.completed.value and bool(record.get("checkpoints"))
    return settings.keep_completed_training_jobs and completed


def expired(records: list[dict[str, Any]], settings: RetentionSettings, now: datetime | None = None) -> list[str]:
    """The ended jobs to remove: older than `ended_job_days`, and beyond the newest
    `max_ended_jobs` (the oldest first). Jobs still scheduled or running are never touched."""
    now = now or datetime.now(timezone.utc)
    ended = sorted(
        (r for r in records if r["status"] in FINAL_STATUSES and not kept_whatever_age(r, settings)),
        key=ended_at,
        reverse=True,
    )
    doomed = set()
    if settings.max_ended_jobs is not None:
        doomed.update(r["job_uuid"] for r in ended[settings.max_ended_jobs :])
    if settings.ended_job_days is not None:
        oldest = now - timedelta(days=settings.ended_job_days)
        doomed.update(r["job_uuid"] for r in ended if ended_at(r) < oldest)
    return [r["job_uuid"] for r in ended if r["job_uuid"] in doomed]


def job_directories(data_dir: str | Path, job_uuid: str) -> list[Path]:
    """Where a job's files are in the data dir: its directory (config; checkpoints and trainer
    state too where the storage is the data dir), Ray Train's run directory, and what this node
    staged for an object store, all named by the job's uuid (a safe name: `[A-Za-z0-9][A-Za-z0-9._-]*`)."""
    root = Path(data_dir).resolve()
    paths = [root / "jobs" / job_uuid, root / "ray_train" / job_uuid, root / "staging" / "jobs" / job_uuid]
    return [p for p in paths if p.resolve().parent.name in ("jobs", "ray_train") and p.resolve().is_relative_to(root)]


def remove_files(data_dir: str | Path, storage: SharedStorage, job_uuid: str) -> None:
    """The job's directories in the data dir and in shared storage (`storage_path`)."""
    for path in job_directories(data_dir, job_uuid):
        shutil.rmtree(path, ignore_errors=True)
    for where in ("jobs", "ray_train"):
        storage.remove(where, job_uuid)


def dropped_checkpoints(checkpoints: list[dict[str, Any]], keep: int | None) -> list[dict[str, Any]]:
    """The checkpoints beyond the latest `keep` (by step): what `checkpoints_to_keep` removes."""
    if keep is None:
        return []
    return sorted(checkpoints, key=lambda c: c["iters"])[:-keep]


def remove_checkpoint(storage: SharedStorage, checkpoint: dict[str, Any]) -> None:
    """A checkpoint's directory, only when it lies under the storage's `jobs/`."""
    path = storage.holds(checkpoint["path"])
    if path is not None and path.startswith(storage.path("jobs") + "/"):
        storage.remove_uri(checkpoint["path"])
