"""What every job of the platform shares, whichever API started it: its id and its status.

Post-training jobs and the data jobs of batch completion and synthetic data generation are
tracked by the same machinery (`llamaray.jobs`), so they report the same statuses. The draft
names the status `PostTrainingJobStatus`; that name is kept for post-training.
"""

from __future__ import annotations

from enum import Enum

from llamaray.api.common import SafeName


class JobStatus(str, Enum):
    running = "running"
    completed = "completed"
    failed = "failed"
    scheduled = "scheduled"
    cancelled = "cancelled"  # API.md's decision: the API can cancel, so a job can end so


FINAL_STATUSES = frozenset({JobStatus.completed.value, JobStatus.failed.value, JobStatus.cancelled.value})

JobUUID = SafeName  # a job's id names its directory and its Ray Job
