"""Reward scoring, synthetic data generation and batch completion over HTTP: the tiny reward
model on vLLM's pooling runner, the chat model, and Ray Data jobs that register datasets."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from llamaray.api.synthetic_data_generation import FilteringFunction
from llamaray.pipelines.filters import keep

from .conftest import MODEL_ID, PROMPTS, REWARD_MODEL_ID, ray_job_submit
from .test_post_training_http import ray_job_status, sft_request, wait_until_final


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def score(client: httpx.Client, groups: list[tuple[str, list[str]]], model: str = REWARD_MODEL_ID) -> list[list[float]]:
    body = {
        "model": model,
        "prompt_generations": [
            {"dialog": {"message": user(q)}, "k_generations": [assistant(a) for a in answers]} for q, answers in groups
        ],
    }
    response = client.post("/reward_scoring/score", json=body)
    assert response.status_code == 200, response.text
    scored = response.json()["scored_generations"]
    for (question, answers), group in zip(groups, scored):
        assert group["prompt"]["content"] == question
        assert [g["message"]["content"] for g in group["k_scored_generations"]] == answers
    return [[g["score"] for g in group["k_scored_generations"]] for group in scored]


def wait_for_data_job(client: httpx.Client, job_uuid: str, timeout_s: float = 300) -> dict:
    return wait_until_final(client, job_uuid, timeout_s, route="/data_jobs/status")


def test_reward_scores_are_deterministic_differ_and_keep_order(client):
    groups = [
        ("What is the secret code?", ["banana-42", "I do not know.", "The code is secret."]),
        ("Hi", ["Hello!", "Go away."]),
    ]
    first = score(client, groups)
    assert first == score(client, groups)  # the same input, the same score
    assert len({s for group in first for s in group}) == 5  # different inputs, different scores
    reversed_groups = [(q, answers[::-1]) for q, answers in groups[::-1]]
    assert score(client, reversed_groups, "llama3_405b_reward") == [s[::-1] for s in first[::-1]]
    # The score reads the dialog too: the same answer to another question scores differently.
    assert score(client, [("Another question", ["banana-42"])])[0][0] != first[0][0]


@pytest.mark.parametrize(
    "body, status, field",
    [
        (
            {
                "model": "no-such-reward",
                "prompt_generations": [{"dialog": {"message": user("q")}, "k_generations": [assistant("a")]}],
            },
            404,
            "model",
        ),
        (
            {
                "model": MODEL_ID,
                "prompt_generations": [{"dialog": {"message": user("q")}, "k_generations": [assistant("a")]}],
            },
            404,
            "model",
        ),
        ({"model": REWARD_MODEL_ID, "prompt_generations": []}, 422, "prompt_generations"),
        (
            {"model": REWARD_MODEL_ID, "prompt_generations": [{"dialog": {"message": user("q")}, "k_generations": []}]},
            422,
            "k_generations",
        ),
    ],
)
def test_reward_scoring_errors(client, body, status, field):
    response = client.post("/reward_scoring/score", json=body)
    assert response.status_code == status, response.text
    assert field in response.text


def generate(client: httpx.Client, **fields) -> dict:
    body = {"prompts": [user(p) for p in PROMPTS[:2]], "num_generations": 4, "max_tokens": 8, "seed": 3, **fields}
    response = client.post("/synthetic_data_generation/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("function", [f.value for f in FilteringFunction if f is not FilteringFunction.none])
def test_sdg_filters_end_to_end(client, function):
    everything = generate(client, filtering_function="none")
    assert everything["statistics"]["mode"] == "inline"
    options = {"top_k": 2, "top_p": 0.6, "threshold": 0.5}
    filtered = generate(client, filtering_function=function, **options)
    for i, (full, kept) in enumerate(zip(everything["synthetic_data"], filtered["synthetic_data"])):
        scores = [g["score"] for g in full["k_scored_generations"]]
        assert len(scores) == 4 and len(set(scores)) > 1  # seeded sampling: k different answers
        expected = keep(scores, FilteringFunction(function), seed=3 * 1_000_003 + i, **options)
        assert [g["score"] for g in kept["k_scored_generations"]] == [scores[j] for j in expected]
    stats = filtered["statistics"]
    assert stats["num_prompts"] == 2 and stats["num_generations"] == 8
    assert stats["num_kept"] == sum(len(p["k_scored_generations"]) for p in filtered["synthetic_data"])
    assert stats["kept_fraction"] == stats["num_kept"] / 8
    assert stats["score_min"] <= stats["score_mean"] <= stats["score_max"] and stats["time_taken_s"] > 0


@pytest.mark.parametrize(
    "fields, status, field",
    [
        ({"model": "no-such-model"}, 404, "model"),
        ({"reward_scoring": "no-such-reward"}, 404, "reward_scoring"),
        ({"reward_scoring": MODEL_ID}, 404, "reward_scoring"),
        ({"num_generations": 0}, 422, "num_generations"),
        ({"threshold": 2}, 422, "threshold"),
        ({"prompts": []}, 422, "prompts"),
        ({"prompts": [user("")]}, 422, "prompts"),
        ({"sampling_params": {"strategy": "top_p", "temperature": 0}}, 400, "temperature"),
        ({"dataset_id": "no-such-dataset", "prompts": []}, 404, "dataset_id"),
    ],
)
def test_sdg_errors(client, fields, status, field):
    body = {"prompts": [user("hi")], **fields}
    response = client.post("/synthetic_data_generation/generate", json=body)
    assert response.status_code == status, response.text
    assert field in response.text


@pytest.mark.restart_witness
def test_sdg_job_over_a_dataset_feeds_an_sft_job(client, dataset_dir):
    prompts = dataset_dir / "sdg_prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": PROMPTS[i % 4]}) + "\n" for i in range(12)))
    created = client.post(
        "/datasets/create",
        json={"uuid": "sdg-prompts", "dataset": {"columns": {"prompt": "text"}, "content_url": prompts.as_uri()}},
    )
    assert created.status_code == 200, created.text
    answer = generate(
        client,
        prompts=[],
        dataset_id="sdg-prompts",
        filtering_function="top_k",
        top_k=2,
        job_uuid="sdg-job-1",
        output_format="parquet",
    )
    assert answer["synthetic_data"] == [] and answer["statistics"]["job_uuid"] == "sdg-job-1"
    status = wait_for_data_job(client, "sdg-job-1")
    assert status["status"] == "completed", status
    assert status["statistics"]["num_prompts"] == 12 and status["statistics"]["num_kept"] == 24
    assert status["progress"]["prompts_done"] == 12 and status["progress"]["generated_tokens"] > 0
    logs = client.get("/data_jobs/logs", params={"job_uuid": "sdg-job-1"}).json()
    assert any("12/12 prompts" in line for line in logs), logs

    dataset = client.get("/datasets/get", params={"dataset_id": status["output_dataset_id"]}).json()
    assert dataset["columns"]["dialog"] == "dialog" and dataset["content_url"].endswith(".parquet")
    import pyarrow.parquet as pq

    rows = pq.read_table(dataset["content_url"][len("file://") :]).to_pylist()
    assert len(rows) == 24
    assert {r["dialog"][0]["content"] for r in rows} <= set(PROMPTS)
    assert all(r["dialog"][-1]["role"] == "assistant" for r in rows)

    # The generated data is a training set as it is.
    body = sft_request(
        "sft-on-sdg", {"columns": {"dialog": "dialog"}, "content_url": dataset["content_url"]}, n_iters=4
    )
    assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
    assert wait_until_final(client, "sft-on-sdg")["status"] == "completed"


def test_cancelling_an_sdg_job_stops_it_and_registers_nothing(client, cluster):
    import time

    prompts = [user(f"{PROMPTS[i % 4]} ({i})") for i in range(64)]
    answer = generate(client, prompts=prompts, max_tokens=64, job_uuid="sdg-cancelled", run_as_job=True)
    assert answer["statistics"]["mode"] == "job"
    deadline = time.monotonic() + 180
    while client.get("/data_jobs/status", params={"job_uuid": "sdg-cancelled"}).json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    assert client.post("/data_jobs/cancel", params={"job_uuid": "sdg-cancelled"}).status_code == 200
    status = client.get("/data_jobs/status", params={"job_uuid": "sdg-cancelled"}).json()
    assert status["status"] == "cancelled" and status["output_dataset_id"] is None, status
    assert client.get("/datasets/get", params={"dataset_id": "sdg-cancelled"}).status_code == 404
    assert not list(Path(cluster.args["storage_path"], "datasets").glob("sdg-cancelled*"))
    assert ray_job_status(cluster, "sdg-cancelled") == "STOPPED"  # Ray and the platform agree
    assert client.post("/data_jobs/cancel", params={"job_uuid": "no-such-job"}).status_code == 404


def test_batch_completion_of_hundreds_of_prompts_runs_as_a_job(client):
    prompts = [f"{PROMPTS[i % 4]} ({i})" for i in range(300)]
    body = {"model": MODEL_ID, "content_batch": prompts, "max_tokens": 8}
    response = client.post("/inference/batch_completion", json=body, timeout=600)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert len(answers) == 300
    for i in (0, 157, 299):  # in the request's order, and what one completion would say (greedy)
        single = client.post(
            "/inference/completion", json={"model": MODEL_ID, "content": prompts[i], "max_tokens": 8}
        ).json()
        assert answers[i]["content"] == single["content"]
    jobs = client.get("/post_training/jobs").json()  # data jobs are not training jobs
    assert not any(job["job_uuid"].startswith("batch-") for job in jobs)

    chats = {"model": MODEL_ID, "batch_dialogs": [{"message": user(p)} for p in prompts[:20]], "max_tokens": 8}
    response = client.post("/inference/batch_chat_completion", json=chats, timeout=600)
    assert response.status_code == 200, response.text
    single = client.post(
        "/inference/chat_completion",
        json={"model": MODEL_ID, "dialog": {"message": user(prompts[19])}, "max_tokens": 8},
    ).json()
    assert response.json()[19]["content"] == single["content"]


def test_a_failing_batch_fails_the_job_and_registers_nothing(client, cluster, tmp_path):
    """`jobs/batch.py` under `ray job submit`; one prompt longer than the model's context."""
    prompts = [f"prompt {i}" for i in range(80)]
    prompts[70] = "word " * 3000
    config = tmp_path / "batch.yaml"
    config.write_text(
        yaml.safe_dump(
            {"request": {"job_uuid": "batch-cli-bad", "model": MODEL_ID, "content_batch": prompts, "max_tokens": 4}}
        )
    )
    submitted = ray_job_submit(cluster, "jobs/batch.py", config)
    assert submitted.returncode != 0
    status = wait_for_data_job(client, "batch-cli-bad", timeout_s=30)
    assert status["status"] == "failed" and "tokens" in status["error"], status
    assert client.get("/datasets/get", params={"dataset_id": "batch-cli-bad"}).status_code == 404
    assert not list(Path(cluster.args["storage_path"], "datasets").glob("batch-cli-bad*"))


def test_a_batch_route_whose_client_leaves_cancels_its_job(client, cluster):
    """Nobody will read the answer: the job the route waits on is cancelled, not left running."""
    import time

    from ray.job_submission import JobSubmissionClient

    ray_jobs = JobSubmissionClient(cluster.dashboard_url)
    before = {job.submission_id for job in ray_jobs.list_jobs()}
    body = {"model": MODEL_ID, "content_batch": [f"prompt {i}" for i in range(40)], "max_tokens": 64}
    with pytest.raises(httpx.ReadTimeout):
        client.post("/inference/batch_completion", json=body, timeout=3)
    (job,) = [j for j in ray_jobs.list_jobs() if j.submission_id not in before and j.submission_id.startswith("batch-")]
    deadline = time.monotonic() + 60
    while (status := client.get("/data_jobs/status", params={"job_uuid": job.submission_id}).json())["status"] not in (
        "cancelled",
        "completed",
        "failed",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status["status"] == "cancelled", status


def test_a_batch_route_whose_job_fails_on_a_prompt_answers_400(client):
    """The prompt, not the platform, was wrong: the route says so, as its inline path does."""
    prompts = [f"prompt {i}" for i in range(20)]
    prompts[17] = "word " * 1500
    response = client.post(
        "/inference/batch_completion", json={"model": MODEL_ID, "content_batch": prompts, "max_tokens": 2}, timeout=300
    )
    assert response.status_code == 400, response.text
    assert "tokens" in response.json()["error"]["message"] and response.json()["error"]["param"]


def test_jobs_beyond_the_running_limit_queue_and_beyond_the_active_limit_get_429(client, cluster):
    """`limits.max_running_jobs` (4) running: a real job waits, `scheduled`, its log saying its
    place; at `limits.max_active_jobs` (16) the next submit is a 429 with Retry-After; when the
    running ones end, the queued job runs to completion. The jobs holding the slots are records
    made through the tracker actor, standing for jobs running elsewhere on the cluster."""
    import time

    import ray

    from llamaray.jobs.tracker import NAME, NAMESPACE

    tracker = ray.get_actor(NAME, namespace=NAMESPACE)
    holders = [f"slot-holder-{i}" for i in range(16 - 1)]
    for i, job in enumerate(holders):
        ray.get(tracker.create.remote(job, "batch", "placeholder", f"elsewhere-{job}", []))
        if i < 4:
            assert ray.get(tracker.take_slot.remote(job, 4)) == 0
            ray.get(tracker.start.remote(job, {}))
    try:
        prompts = [user(f"{PROMPTS[i % 4]} ({i})") for i in range(20)]
        generate(client, prompts=prompts, num_generations=1, job_uuid="sdg-queued", run_as_job=True)
        deadline = time.monotonic() + 120
        while not any("place 1 in the queue" in line for line in job_logs(client, "sdg-queued")):
            assert time.monotonic() < deadline, job_logs(client, "sdg-queued")
            time.sleep(0.5)
        assert client.get("/data_jobs/status", params={"job_uuid": "sdg-queued"}).json()["status"] == "scheduled"

        body = {"prompts": prompts, "num_generations": 1, "max_tokens": 8, "run_as_job": True, "job_uuid": "sdg-429"}
        refused = client.post("/synthetic_data_generation/generate", json=body)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0, refused.text
        assert "limits.max_active_jobs" in refused.json()["error"]["message"]
        assert client.get("/data_jobs/status", params={"job_uuid": "sdg-429"}).status_code == 404
    finally:
        for job in holders:
            ray.get(tracker.finish.remote(job, "cancelled"))
    status = wait_for_data_job(client, "sdg-queued", timeout_s=300)
    assert status["status"] == "completed", status


def job_logs(client: httpx.Client, job_uuid: str) -> list[str]:
    return client.get("/data_jobs/logs", params={"job_uuid": job_uuid}).json()


def test_the_job_tracker_killed_mid_job_comes_back_with_every_record(client):
    """SIGKILL of the tracker actor while a job runs: Ray restarts it from the store, no record
    is lost, the running job keeps reporting (its calls are retried) and completes."""
    import os
    import signal
    import time

    import ray
    from ray.util.state import get_actor

    from llamaray.jobs.tracker import NAME, NAMESPACE

    before = {job["job_uuid"] for job in client.get("/post_training/jobs").json()}
    prompts = [user(f"{PROMPTS[i % 4]} ({i})") for i in range(40)]
    generate(client, prompts=prompts, num_generations=1, max_tokens=32, job_uuid="sdg-tracker-killed", run_as_job=True)
    deadline = time.monotonic() + 180
    while client.get("/data_jobs/status", params={"job_uuid": "sdg-tracker-killed"}).json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    tracker = ray.get_actor(NAME, namespace=NAMESPACE)
    killed = get_actor(tracker._actor_id.hex()).pid
    os.kill(killed, signal.SIGKILL)

    status = wait_for_data_job(client, "sdg-tracker-killed", timeout_s=300)
    assert status["status"] == "completed", status
    assert before <= {job["job_uuid"] for job in client.get("/post_training/jobs").json()}
    assert get_actor(tracker._actor_id.hex()).pid != killed  # a new process: Ray restarted it
    assert any("registered dataset" in line for line in job_logs(client, "sdg-tracker-killed"))
