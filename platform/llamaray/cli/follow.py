"""Following a job to its end with a live bar: steps, loss and tokens/s for training, prompts
and tokens/s for data jobs; tqdm gives the ETA. The bar is drawn from the job's status route,
so it works for a job submitted any way (HTTP, `ray job submit`, another shell)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from tqdm import tqdm

from llamaray.api.data_jobs import DataJobStatusResponse
from llamaray.api.post_training import PostTrainingJobStatusResponse

POLL_S = 1.0
FINAL = {"completed", "failed", "cancelled"}


def follow_training(
    status: Callable[[], PostTrainingJobStatusResponse], poll_s: float = POLL_S
) -> PostTrainingJobStatusResponse:
    """Polls `status` until the job ends; the bar counts optimizer steps."""
    with tqdm(desc="queued", unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            job = status()
            latest: dict[str, float] = {}  # the last value of each: an eval entry has no `loss`
            for entry in job.metrics:
                latest.update(entry)
            total = int(latest.get("max_steps", 0)) or None
            if total and bar.total != total:
                bar.total = total
            bar.set_description(job.status.value)
            bar.n = int(latest.get("step", bar.n))
            bar.set_postfix(_shown(latest, ("loss", "eval_loss", "tokens_per_second")), refresh=False)
            bar.refresh()
            if job.status.value in FINAL:
                return job
            time.sleep(poll_s)


def follow_data_job(status: Callable[[], DataJobStatusResponse], poll_s: float = POLL_S) -> DataJobStatusResponse:
    """Polls `status` until the job ends; the bar counts prompts answered."""
    with tqdm(desc="queued", unit="prompt", file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            job = status()
            progress = job.progress or {}
            if progress.get("prompts_total") and bar.total != int(progress["prompts_total"]):
                bar.total = int(progress["prompts_total"])
            bar.set_description(job.status.value)
            bar.n = int(progress.get("prompts_done", bar.n))
            bar.set_postfix(_shown(progress, ("generated_tokens", "tokens_per_second")), refresh=False)
            bar.refresh()
            if job.status.value in FINAL:
                return job
            time.sleep(poll_s)


def _shown(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    return {key.replace("tokens_per_second", "tok/s"): f"{values[key]:.4g}" for key in keys if key in values}
