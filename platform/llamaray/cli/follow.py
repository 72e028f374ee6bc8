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
    return _follow(status, "step", _training_progress, poll_s)


def follow_data_job(status: Callable[[], DataJobStatusResponse], poll_s: float = POLL_S) -> DataJobStatusResponse:
    """Polls `status` until the job ends; the bar counts prompts answered."""
    return _follow(status, "prompt", _data_progress, poll_s)


Progress = tuple[int | None, int | None, dict[str, str]]  # done, total, what the bar shows beside


def _training_progress(job: PostTrainingJobStatusResponse) -> Progress:
    latest: dict[str, float] = {}  # the last value of each: an eval entry has no `loss`
    for entry in job.metrics:
        latest.update(entry)
    total = int(latest.get("max_steps", 0)) or None
    step = int(latest["step"]) if "step" in latest else None
    return step, total, _shown(latest, ("loss", "eval_loss", "tokens_per_second"))


def _data_progress(job: DataJobStatusResponse) -> Progress:
    progress = job.progress or {}
    total = int(progress["prompts_total"]) if progress.get("prompts_total") else None
    done = int(progress["prompts_done"]) if "prompts_done" in progress else None
    return done, total, _shown(progress, ("generated_tokens", "tokens_per_second"))


def _follow(status: Callable[[], Any], unit: str, progress: Callable[[Any], Progress], poll_s: float) -> Any:
    with tqdm(desc="queued", unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            job = status()
            done, total, shown = progress(job)
            if total and bar.total != total:
                bar.total = total
            bar.set_description(job.status.value)
            bar.n = bar.n if done is None else done
            bar.set_postfix(shown, refresh=False)
            bar.refresh()
            if job.status.value in FINAL:
                return job
            time.sleep(poll_s)


def _shown(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    return {key.replace("tokens_per_second", "tok/s"): f"{values[key]:.4g}" for key in keys if key in values}
