"""Retention: ended jobs past their time leave no record, log or file behind (real store, real files)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from llamaray.api.datasets import Dataset
from llamaray.config import RetentionSettings
from llamaray.datasets.registry import register
from llamaray.jobs.retention import expired
from llamaray.jobs.tracker import JobTracker
from llamaray.store.metadata import MetadataStore


def record(job_uuid: str, status: str, days_ago: float, checkpoints: int = 0) -> dict:
    ended = (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat()
    return {
        "job_uuid": job_uuid,
        "status": status,
        "scheduled_at": ended,
        "completed_at": ended if status != "running" else None,
        "checkpoints": [{"iters": i, "path": f"file:///x/{i}"} for i in range(checkpoints)],
    }


def test_which_ended_jobs_expire():
    records = [
        record("old-failed", "failed", 40),
        record("old-adapter", "completed", 90, checkpoints=1),  # its adapter may be served
        record("old-data-job", "completed", 45),
        record("recent", "cancelled", 1),
        record("running", "running", 100),
    ]
    assert expired(records, RetentionSettings()) == ["old-failed", "old-data-job"]  # newest first
    by_count = RetentionSettings(ended_job_days=None, max_ended_jobs=1)
    assert expired(records, by_count) == ["old-failed", "old-data-job"]  # the newest ended one stays
    everything = RetentionSettings(max_ended_jobs=0, keep_completed_training_jobs=False)
    assert expired(records, everything) == ["recent", "old-failed", "old-data-job", "old-adapter"]
    assert expired(records, RetentionSettings(ended_job_days=None, max_ended_jobs=None)) == []


def disk_use(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_pruning_frees_the_disk_and_forgets_the_job(tmp_path):
    data_dir = tmp_path / "data"
    platform = {"data_dir": str(data_dir), "retention": {"max_ended_jobs": 1, "delete_output_datasets": True}}
    tracker = JobTracker(platform)
    for job in ("first", "second"):
        tracker.create(job, "sdg", "f", job, [])
        tracker.start(job, {})
        for directory in (data_dir / "jobs" / job / "checkpoints" / "iter-1", data_dir / "ray_train" / job):
            directory.mkdir(parents=True)
            (directory / "weights.bin").write_bytes(b"w" * 1_000_000)
        tracker.report(job, ["step 1"], [{"step": 1.0}])
    output = data_dir / "datasets" / "first-out.jsonl"
    output.parent.mkdir()
    output.write_text('{"text": "x"}\n')
    store = MetadataStore(data_dir / "metadata.db")
    register(store, "first-out", Dataset(columns={"text": "text"}, content_url=output.as_uri()), 1)
    store.put("owner", "job/first", {"owner": None})
    tracker.set_output("first", "first-out", {})
    before = disk_use(data_dir)

    tracker.finish("first", "completed")
    tracker.prune()  # the pass a finished job wakes may have run it already: the state is what counts
    tracker.finish("second", "failed", "boom")
    tracker.prune()

    assert [r["job_uuid"] for r in tracker.jobs()] == ["second"]
    assert not (data_dir / "jobs" / "first").exists() and not (data_dir / "ray_train" / "first").exists()
    assert (data_dir / "jobs" / "second" / "checkpoints" / "iter-1" / "weights.bin").exists()
    assert store.read_lines("job_log", "first") == [] and store.read_lines("job_metrics", "first") == []
    assert store.list("owner") == [] and store.list("dataset") == [] and not output.exists()
    assert before - disk_use(data_dir) >= 2_000_000


def test_only_the_latest_checkpoints_are_kept(tmp_path):
    data_dir = tmp_path / "data"
    tracker = JobTracker({"data_dir": str(data_dir), "retention": {"checkpoints_to_keep": 2}})
    tracker.create("j", "sft", "lora", "j", [])
    tracker.start("j", {})
    paths = []
    for step in (10, 20, 30):
        path = data_dir / "jobs" / "j" / "checkpoints" / f"iter-{step}"
        path.mkdir(parents=True)
        (path / "adapter.safetensors").write_bytes(b"a" * 1000)
        tracker.add_checkpoint("j", step, path.as_uri())
        paths.append(path)
    assert [c["iters"] for c in tracker.get("j")["checkpoints"]] == [20, 30]
    assert [p.exists() for p in paths] == [False, True, True]
    assert any("removed the checkpoint at step 10" in line for line in tracker.logs("j"))
