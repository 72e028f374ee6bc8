"""JobTracker's record keeping, on a real SQLite store (the actor wrapper adds only Ray)."""

from __future__ import annotations

import pytest

from llamaray.errors import ConflictError, NotFoundError
from llamaray.jobs.tracker import CLUSTER_STOPPED, JobTracker


@pytest.fixture()
def platform(tmp_path) -> dict:
    return {"data_dir": str(tmp_path)}


def test_a_job_goes_from_scheduled_to_completed(platform):
    tracker = JobTracker(platform)
    tracker.create("j1", "sft", "lora", "ray-1", ["w"])
    assert tracker.claim("j1", "ray-1")
    tracker.start("j1", {"num_workers": 2})
    tracker.report("j1", ["step 1"], [{"step": 1.0, "loss": 2.0}])
    tracker.add_checkpoint("j1", 1, "file:///c/iter-1")
    assert tracker.finish("j1", "completed")
    assert not tracker.finish("j1", "failed", "late")  # the first final status wins
    record = tracker.get("j1")
    assert record["status"] == "completed" and record["resources_allocated"] == {"num_workers": 2}
    assert record["checkpoints"] == [{"iters": 1, "path": "file:///c/iter-1"}]
    assert tracker.metrics("j1") == [{"step": 1.0, "loss": 2.0}]
    assert any(line.endswith("completed") for line in tracker.logs("j1"))
    assert tracker.logs("j1", start=len(tracker.logs("j1"))) == []


def test_duplicates_unknown_jobs_and_foreign_drivers(platform):
    tracker = JobTracker(platform)
    tracker.create("j1", "sft", "lora", "ray-1", [])
    with pytest.raises(ConflictError):
        tracker.create("j1", "sft", "lora", "ray-2", [])
    with pytest.raises(ConflictError):
        tracker.claim("j1", "ray-2")
    with pytest.raises(NotFoundError):
        tracker.get("nope")


def test_cancel_before_start_and_while_running(platform):
    tracker = JobTracker(platform)
    tracker.create("queued", "sft", "lora", "r1", [])
    assert tracker.request_cancel("queued") == "cancelled"
    assert not tracker.claim("queued", "r1")
    tracker.create("busy", "sft", "lora", "r2", [])
    tracker.start("busy", {})
    assert tracker.request_cancel("busy") == "running" and tracker.cancel_requested("busy")


def test_a_new_tracker_keeps_finished_jobs_and_fails_interrupted_ones(platform):
    first = JobTracker(platform)
    first.create("done", "sft", "lora", "r1", [])
    first.start("done", {})
    first.finish("done", "completed")
    first.create("cut", "dpo", "dpo", "r2", [])
    first.start("cut", {})
    second = JobTracker(platform)  # the cluster restarted
    assert second.get("done")["status"] == "completed"
    assert second.get("cut")["status"] == "failed" and second.get("cut")["error"] == CLUSTER_STOPPED
    assert second.logs("done") == first.logs("done")


def test_a_store_from_before_the_shared_job_kinds_is_migrated_on_open(platform, tmp_path):
    """Stores written when the tracker kept jobs as `training_job` still list every job."""
    from llamaray.store.metadata import MetadataStore

    old = MetadataStore(tmp_path / "metadata.db")
    record = {
        "job_uuid": "old",
        "kind": "sft",
        "algorithm": "lora",
        "status": "completed",
        "ray_job_id": "old",
        "scheduled_at": None,
        "started_at": None,
        "completed_at": None,
        "resources_allocated": None,
        "checkpoints": [],
        "warnings": [],
        "error": None,
        "cancel_requested": False,
    }
    old.create("training_job", "old", record)
    old.append_lines("training_log", "old", ["trained"])
    old.append_lines("training_metrics", "old", ['{"loss": 1.5}'])
    tracker = JobTracker(platform)
    assert tracker.get("old")["status"] == "completed"
    assert [r["job_uuid"] for r in tracker.jobs()] == ["old"]
    assert tracker.logs("old") == ["trained"] and tracker.metrics("old") == [{"loss": 1.5}]
    assert old.list("training_job") == []


def test_a_retried_create_is_done_already_and_a_foreign_one_conflicts(platform):
    """The actor restarted before it answered: the caller's retry must not leave the job stuck."""
    tracker = JobTracker(platform)
    tracker.create("j1", "sft", "lora", "j1", [], "call-1")
    tracker.create("j1", "sft", "lora", "j1", [], "call-1")  # Ray's retry of the same call
    assert tracker.get("j1")["status"] == "scheduled" and tracker.claim("j1", "j1")
    with pytest.raises(ConflictError):  # the same uuid submitted again: the route's 409
        tracker.create("j1", "sft", "lora", "j1", [], "call-2")
    with pytest.raises(ConflictError):
        tracker.create("j1", "sft", "lora", "j1", [])


def test_jobs_beyond_the_running_limit_wait_their_turn_in_order(platform):
    tracker = JobTracker(platform)
    for job in ("a", "b", "c", "d"):
        tracker.create(job, "sdg", "f", job, [])
    assert tracker.take_slot("a", 2) == 0 and tracker.take_slot("b", 2) == 0
    tracker.start("a", {})
    assert tracker.take_slot("d", 2) == 1  # d asked first: it is next
    assert tracker.take_slot("c", 2) == 2
    assert tracker.take_slot("d", 2) == 1  # asking again keeps its place
    tracker.finish("a", "completed")
    assert tracker.take_slot("c", 2) == 1  # d is still before it
    assert tracker.take_slot("d", 2) == 0
    assert tracker.take_slot("c", 2) == 1
    tracker.request_cancel("b")  # scheduled with a slot, never started: cancelled at once
    assert tracker.take_slot("c", 2) == 0
    assert tracker.take_slot("a", 2) == 0  # an ended job is not held back (its driver learns it ended)
