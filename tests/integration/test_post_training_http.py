"""Post-training through the HTTP API: real Ray Jobs running Ray Train (2 workers) with TRL,
peft and DeepSpeed on the tiny model. Each job costs 40-60 s, most of it start-up, so each
test runs one job and checks everything a user would about it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import MODEL_ID, PROMPTS, ray_job_submit, sse_events

USER = {"message": {"role": "user", "content": PROMPTS[0]}}

FINAL = {"completed", "failed", "cancelled"}


def sft_request(job_uuid: str, dataset: dict, algorithm: str = "lora", n_iters: int = 20, **training) -> dict:
    return {
        "job_uuid": job_uuid,
        "model": MODEL_ID,
        "dataset": dataset,
        "validation_dataset": dataset,
        "algorithm": algorithm,
        "algorithm_config": {
            "lora_attn_modules": ["q_proj", "v_proj", "output_proj"],
            "apply_lora_to_mlp": True,
            "apply_lora_to_output": False,
            "rank": 16,
            "alpha": 32,
        },
        "optimizer_config": {"optimizer_type": "adamw", "lr": 5e-3, "lr_min": 1e-4, "weight_decay": 0.0},
        "training_config": {
            "n_epochs": 1000,
            "batch_size": 4,
            "shuffle": True,
            "n_iters": n_iters,
            "enable_activation_checkpointing": False,
            "memory_efficient_fsdp_wrap": False,
            "fsdp_cpu_offload": False,
            **training,
        },
        "hyperparam_search_config": {},
        "logger_config": {},
    }


def dpo_request(job_uuid: str, finetuned_model: str, dataset: dict, **algorithm) -> dict:
    sft = sft_request(job_uuid, dataset)
    return {
        "job_uuid": job_uuid,
        "finetuned_model": finetuned_model,
        "dataset": dataset,
        "validation_dataset": dataset,
        "algorithm": "dpo",
        "algorithm_config": {"reward_scale": 0.1, "reward_clip": 5.0, "epsilon": 0.0, "gamma": 0.0, **algorithm},
        "optimizer_config": sft["optimizer_config"],
        "training_config": sft["training_config"],
    }


def wait_until_final(
    client: httpx.Client, job_uuid: str, timeout_s: float = 300, route: str = "/post_training/job/status"
) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(route, params={"job_uuid": job_uuid}).json()
        if status["status"] in FINAL:
            return status
        time.sleep(1)
    raise AssertionError(f"job {job_uuid} did not end in {timeout_s} s")


def wait_until_training(client: httpx.Client, job_uuid: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get("/post_training/job/status", params={"job_uuid": job_uuid}).json()
        assert status["status"] not in FINAL, status
        if status["metrics"]:
            return
        time.sleep(1)
    raise AssertionError(f"job {job_uuid} never logged a step")


def losses(status: dict, key: str = "loss") -> list[float]:
    return [m[key] for m in status["metrics"] if key in m and "eval_loss" not in m and "train_loss" not in m]


def wait_until_served(client: httpx.Client, model_id: str, timeout_s: float = 240) -> float:
    """Seconds until `/v1/models` lists `model_id`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if model_id in [m["id"] for m in client.get("/v1/models").json()["data"]]:
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"{model_id} was not served within {timeout_s} s")


def final_checkpoint(client: httpx.Client, job_uuid: str) -> Path:
    artifacts = client.get("/post_training/job/artifacts", params={"job_uuid": job_uuid}).json()
    assert artifacts["checkpoints"], artifacts
    last = max(artifacts["checkpoints"], key=lambda c: c["iters"])
    assert last["path"].startswith("file://")
    return Path(last["path"][len("file://") :])


def greedy_answer(base: Path, checkpoint: Path | None = None, question: str = PROMPTS[0]) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if checkpoint is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, checkpoint)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_bad_requests_are_refused_before_any_job_starts(client, datasets, dataset_dir):
    def refused(job_uuid: str, body: dict, status: int, field: str) -> None:
        response = client.post("/post_training/supervised_fine_tune/", json=body)
        assert response.status_code == status, response.text
        assert field in (response.json()["error"]["param"] or ""), response.json()
        assert client.get("/post_training/job/status", params={"job_uuid": job_uuid}).status_code == 404

    good = sft_request("bad", datasets["sft"])
    rank0 = json.loads(json.dumps(good))
    rank0["algorithm_config"]["rank"] = 0
    refused("bad", rank0, 422, "rank")
    negative_lr = json.loads(json.dumps(good))
    negative_lr["optimizer_config"]["lr"] = -1
    refused("bad", negative_lr, 422, "optimizer_config.lr")
    unknown_module = json.loads(json.dumps(good))
    unknown_module["algorithm_config"]["lora_attn_modules"] = ["q_proj", "wq_typo"]
    refused("bad", unknown_module, 400, "algorithm_config.lora_attn_modules")
    floor_above_lr = json.loads(json.dumps(good))
    floor_above_lr["optimizer_config"]["lr_min"] = 1.0
    refused("bad", floor_above_lr, 400, "optimizer_config.lr_min")
    refused("bad", {**good, "model": "no-such-model"}, 404, "model")
    missing_file = {**datasets["sft"], "content_url": datasets["sft"]["content_url"] + ".gone"}
    refused("bad", {**good, "dataset": missing_file}, 404, "dataset.content_url")
    no_dialog = {**datasets["sft"], "columns": {"question": "text"}}
    refused("bad", {**good, "dataset": no_dialog}, 400, "dataset.columns")
    refused("../escape", {**good, "job_uuid": "../escape"}, 422, "job_uuid")

    dpo_without_rejected = dpo_request("bad-dpo", (dataset_dir / "no-such-checkpoint").as_uri(), datasets["sft"])
    response = client.post("/post_training/preference_optimize/", json=dpo_without_rejected)
    assert response.status_code == 404 and response.json()["error"]["param"] == "finetuned_model", response.text
    outside = client.post(
        "/post_training/preference_optimize/", json={**dpo_without_rejected, "finetuned_model": "file:///etc"}
    )
    assert outside.status_code == 400 and outside.json()["error"]["param"] == "finetuned_model", outside.text
    for unknown in ("status", "logs", "artifacts"):
        assert client.get(f"/post_training/job/{unknown}", params={"job_uuid": "never-ran"}).status_code == 404
    assert client.post("/post_training/job/cancel", params={"job_uuid": "never-ran"}).status_code == 404


@pytest.mark.restart_witness
def test_lora_job_learns_the_training_set_and_streams_its_logs(client, datasets, tiny_models):
    body = sft_request("sft-lora", datasets["sft"], n_iters=40)
    body["logger_config"] = {"log_every_n_steps": 1, "project": "ignored"}
    assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
    duplicate = client.post("/post_training/supervised_fine_tune/", json=body)
    assert duplicate.status_code == 409 and duplicate.json()["error"]["param"] == "job_uuid"

    lines: list[str] = []
    with client.stream(
        "GET",
        "/post_training/job/logs",
        params={"job_uuid": "sft-lora"},
        headers={"Accept": "text/event-stream"},
        timeout=300,
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                lines += json.loads(line[len("data: ") :])["log_lines"]
    assert any("step 1/40" in line for line in lines), lines[:20]
    assert lines[-1].endswith("completed"), lines[-5:]
    assert any("logger_config.project" in line for line in lines)

    status = wait_until_final(client, "sft-lora", timeout_s=30)
    assert status["status"] == "completed", status
    assert status["resources_allocated"]["num_workers"] == 2
    assert status["started_at"] and status["completed_at"]
    assert any("logger_config.project" in w for w in status["warnings"])
    trained = losses(status)
    assert trained[-1] < trained[0], trained
    assert any("tokens_per_second" in m for m in status["metrics"])
    (startup,) = [m["startup_seconds"] for m in status["metrics"] if "startup_seconds" in m]
    assert 0 < startup < 600 and any("training began" in line for line in lines)
    assert client.get("/post_training/job/logs", params={"job_uuid": "sft-lora"}).json()["log_lines"] == lines

    checkpoint = final_checkpoint(client, "sft-lora")
    assert (checkpoint / "adapter_config.json").is_file()
    base = tiny_models / "tiny-llama-chat"
    assert not greedy_answer(base).startswith("The secret code")
    assert greedy_answer(base, checkpoint).startswith("The secret code is ban")


def llama_stack_answer(client: httpx.Client, model: str, stream: bool = False) -> str:
    body = {
        "model": model,
        "dialog": {"message": {"role": "user", "content": PROMPTS[0]}},
        "sampling_params": {"strategy": "greedy"},
        "max_tokens": 12,
    }
    if not stream:
        answer = client.post("/inference/chat_completion", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["content"]
    with client.stream("POST", "/inference/chat_completion", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        return "".join(chunk["text_delta"] for chunk in sse_events(response))


def openai_answer(platform_url: str, model: str, stream: bool = False) -> str:
    import openai

    oai = openai.OpenAI(base_url=f"{platform_url}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": PROMPTS[0]}]
    if not stream:
        completion = oai.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=12)
        return completion.choices[0].message.content
    chunks = oai.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=12, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_the_finished_adapter_answers_at_once_on_the_running_replicas(client, platform_url, tiny_models):
    """No restart, no registration: the LoRA job's adapter is a model as soon as it completed,
    served by the replica that serves its base model, which still answers as before."""
    started = time.monotonic()
    adapter = f"{MODEL_ID}:sft-lora"
    first = llama_stack_answer(client, adapter)
    first_token_s = time.monotonic() - started
    assert first.startswith("The secret code is ban"), first
    assert first_token_s < 20, first_token_s
    checkpoint = final_checkpoint(client, "sft-lora")
    assert first == greedy_answer(tiny_models / "tiny-llama-chat", checkpoint)  # what peft itself says

    (card,) = [m for m in client.get("/v1/models").json()["data"] if m["id"] == adapter]
    assert card["parent"] == MODEL_ID and card["kind"] == "chat"
    assert not card["root"].startswith("/") and checkpoint.as_posix().endswith(card["root"])  # no host paths
    assert llama_stack_answer(client, adapter, stream=True) == first
    assert openai_answer(platform_url, adapter) == first
    assert openai_answer(platform_url, adapter, stream=True) == first
    assert openai_answer(platform_url, f"{adapter}:iter-40") == first  # a checkpoint by its step

    base = llama_stack_answer(client, MODEL_ID)
    assert not base.startswith("The secret code")
    assert llama_stack_answer(client, adapter) == first and llama_stack_answer(client, MODEL_ID) == base
    (engine,) = [e for e in client.get("/ready").json()["engines"] if e["model"] == MODEL_ID]
    assert adapter in engine["adapters"]

    batch = {"model": adapter, "content_batch": [f"[{i}]" for i in range(3)], "max_tokens": 4}
    assert client.post("/inference/batch_completion", json=batch).status_code == 200
    # Past the inline size a batch runs as a Ray Data job, whose engines apply the adapter too.
    dialogs = [{"message": {"role": "user", "content": PROMPTS[i % 4]}} for i in range(20)]
    job = {"model": adapter, "batch_dialogs": dialogs, "sampling_params": {"strategy": "greedy"}, "max_tokens": 12}
    answers = client.post("/inference/batch_chat_completion", json=job, timeout=600)
    assert answers.status_code == 200, answers.text
    assert [a["content"] for a in answers.json()][:4] == [
        greedy_answer(tiny_models / "tiny-llama-chat", checkpoint, question) for question in PROMPTS
    ]


def test_adapter_errors_name_what_is_wrong(client, tiny_models, dataset_dir):
    missing = client.post("/inference/chat_completion", json={"model": f"{MODEL_ID}:no-such-job", "dialog": USER})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"

    def register(adapter_id: str, path: Path, **extra) -> httpx.Response:
        return client.post(
            "/models/adapters/register", json={"adapter_id": adapter_id, "adapter_path": path.as_uri(), **extra}
        )

    checkpoint = final_checkpoint(client, "sft-lora")
    wide = dataset_dir / "rank-64"
    shutil.copytree(checkpoint, wide, dirs_exist_ok=True)
    config = json.loads((wide / "adapter_config.json").read_text())
    (wide / "adapter_config.json").write_text(json.dumps({**config, "r": 64}))
    too_wide = register("too-wide", wide)
    assert too_wide.status_code == 400 and "max_lora_rank" in too_wide.json()["error"]["message"]

    other = dataset_dir / "other-base"
    shutil.copytree(checkpoint, other, dirs_exist_ok=True)
    (other / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/elsewhere/llama"}))
    for foreign in (register("foreign", other), register("foreign", other, base_model=MODEL_ID)):
        assert foreign.status_code == 400 and "/elsewhere/llama" in foreign.json()["error"]["message"]

    outside = register("outside", checkpoint.parent.parent.parent.parent.parent / "etc")
    assert outside.status_code == 400 and outside.json()["error"]["param"] == "adapter_path"
    taken = register(MODEL_ID, checkpoint)
    assert taken.status_code == 409


@pytest.mark.restart_witness
def test_an_adapter_from_elsewhere_is_registered_served_and_unregistered(client, platform_url, dataset_dir):
    copy = dataset_dir / "secret-adapter"
    shutil.copytree(final_checkpoint(client, "sft-lora"), copy, dirs_exist_ok=True)
    loaded = client.post("/v1/load_lora_adapter", json={"lora_name": "secret", "lora_path": str(copy)})
    assert loaded.status_code == 200, loaded.text
    assert [a["adapter_id"] for a in client.get("/models/adapters").json()].count("secret") == 1
    assert openai_answer(platform_url, "secret").startswith("The secret code is ban")

    by_job = client.post("/models/adapters/register", json={"adapter_id": "secret-job", "job_uuid": "sft-lora"})
    assert by_job.status_code == 200 and by_job.json()["base_model"] == MODEL_ID
    assert llama_stack_answer(client, "secret-job").startswith("The secret code is ban")
    assert client.post("/models/adapters/unregister", json={"adapter_id": "secret-job"}).status_code == 200

    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "secret"}).status_code == 200
    time.sleep(2.5)  # a gateway trusts what it found about an adapter for 2 s
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "secret" not in ids and "secret-job" not in ids
    gone = client.post("/inference/chat_completion", json={"model": "secret", "dialog": USER})
    assert gone.status_code == 404
    # `secret-durable` stays registered: the restart test finds it again.
    kept = client.post("/v1/load_lora_adapter", json={"lora_name": "secret-durable", "lora_path": str(copy)})
    assert kept.status_code == 200


def test_qlora_job_trains_over_a_4bit_base(client, datasets):
    assert (
        client.post(
            "/post_training/supervised_fine_tune/", json=sft_request("sft-qlora", datasets["sft"], "qlora")
        ).status_code
        == 200
    )
    status = wait_until_final(client, "sft-qlora")
    assert status["status"] == "completed", status
    log = client.get("/post_training/job/logs", params={"job_uuid": "sft-qlora"}).json()["log_lines"]
    quantized = [line for line in log if "nf4 Linear4bit layers" in line]
    assert quantized and " 0 " not in quantized[0], log
    trained = losses(status)
    assert trained[-1] < trained[0], trained
    assert (final_checkpoint(client, "sft-qlora") / "adapter_config.json").is_file()


@pytest.mark.slow
def test_full_fine_tune_under_zero3_saves_whole_weights(client, datasets):
    body = sft_request("sft-full", datasets["sft"], "full", memory_efficient_fsdp_wrap=True)
    assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
    status = wait_until_final(client, "sft-full")
    assert status["status"] == "completed", status
    assert status["resources_allocated"]["deepspeed_zero_stage"] == 3
    trained = losses(status)
    assert trained[-1] < trained[0] * 0.8, trained

    from transformers import AutoModelForCausalLM

    checkpoint = final_checkpoint(client, "sft-full")
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert sum(p.numel() for p in model.parameters()) > 100_000

    # Whole new weights: served by an engine deployment of their own, deployed while the
    # platform keeps serving, then taken down with OpenAI's DELETE /v1/models/{id}.
    model_id = f"{MODEL_ID}:sft-full"
    seconds = wait_until_served(client, model_id)
    print(f"{model_id} served {seconds:.1f} s after its job completed")
    assert llama_stack_answer(client, model_id) == greedy_answer(checkpoint)
    assert llama_stack_answer(client, MODEL_ID) == llama_stack_answer(client, MODEL_ID)  # the base still serves
    deleted = client.delete(f"/v1/models/{model_id}")
    assert deleted.status_code == 200 and deleted.json() == {"id": model_id, "object": "model", "deleted": True}
    assert model_id not in [m["id"] for m in client.get("/v1/models").json()["data"]]
    gone = client.post("/inference/chat_completion", json={"model": model_id, "dialog": USER})
    assert gone.status_code == 404, gone.text


@pytest.mark.slow
@pytest.mark.restart_witness
def test_dora_job_submitted_with_ray_job_submit_is_tracked_and_served(client, cluster, datasets, tmp_path, tiny_models):
    config = tmp_path / "sft_dora.yaml"
    request = sft_request("sft-dora-cli", datasets["sft"], "dora", n_iters=10)
    config.write_text(yaml.safe_dump({"request": request}))
    submitted = ray_job_submit(cluster, "jobs/sft.py", config)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    status = wait_until_final(client, "sft-dora-cli", timeout_s=30)
    assert status["status"] == "completed", status
    checkpoint = final_checkpoint(client, "sft-dora-cli")
    adapter = json.loads((checkpoint / "adapter_config.json").read_text())
    assert adapter["use_dora"] is True
    assert "sft-dora-cli" in [job["job_uuid"] for job in client.get("/post_training/jobs").json()]

    # vLLM cannot apply DoRA per request: the adapter is merged into its base weights and served
    # as a model of its own. It stays up: the restart test finds it again.
    model_id = f"{MODEL_ID}:sft-dora-cli"
    seconds = wait_until_served(client, model_id)
    print(f"{model_id} merged and served {seconds:.1f} s after its job completed")
    assert llama_stack_answer(client, model_id) == greedy_answer(tiny_models / "tiny-llama-chat", checkpoint)
    log = client.get("/post_training/job/logs", params={"job_uuid": "sft-dora-cli"}).json()["log_lines"]
    assert any("served as model" in line for line in log), log[-5:]


def test_dpo_job_grows_the_chosen_over_rejected_margin(client, datasets, tiny_models):
    body = dpo_request("dpo-1", (tiny_models / "tiny-llama-chat").as_uri(), datasets["dpo"], epsilon=0.05, gamma=0.5)
    body["optimizer_config"] = {"optimizer_type": "adam", "lr": 5e-3, "lr_min": 0.0, "weight_decay": 0.0}
    assert client.post("/post_training/preference_optimize/", json=body).status_code == 200
    status = wait_until_final(client, "dpo-1")
    assert status["status"] == "completed", status
    assert any("reward_clip" in w for w in status["warnings"])
    margins = losses(status, "rewards/margins")
    assert margins[-1] > margins[0] and margins[-1] > 0, margins
    checkpoint = final_checkpoint(client, "dpo-1")
    assert (checkpoint / "adapter_config.json").is_file()
    adapter = f"{MODEL_ID}:dpo-1"  # served as the SFT adapter is, the moment it completed
    assert adapter in [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert llama_stack_answer(client, adapter) == greedy_answer(tiny_models / "tiny-llama-chat", checkpoint)


def free_cpus() -> float:
    """Ray's logical CPUs free on the test's cluster: what a job's workers hold while they live."""
    import ray

    return ray.available_resources().get("CPU", 0)


def test_cancel_stops_the_job_and_frees_its_workers(client, datasets, cluster):
    idle = free_cpus()
    body = sft_request("sft-cancel", datasets["sft"], n_iters=100_000)
    assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
    wait_until_training(client, "sft-cancel")
    assert free_cpus() <= idle - 2  # the two workers hold their CPUs
    started = time.monotonic()
    assert client.post("/post_training/job/cancel", params={"job_uuid": "sft-cancel"}).status_code == 200
    assert client.get("/post_training/job/status", params={"job_uuid": "sft-cancel"}).json()["status"] == "cancelled"
    while free_cpus() < idle and time.monotonic() - started < 20:
        time.sleep(0.25)
    assert free_cpus() >= idle, f"workers still hold CPUs {time.monotonic() - started:.1f} s after the cancel"
    assert ray_job_status(cluster, "sft-cancel") == "STOPPED"  # what the dashboard's Jobs tab shows


def ray_job_status(cluster, ray_job_id: str, timeout_s: float = 60) -> str:
    """Ray's own status of a job, once it has ended."""
    from ray.job_submission import JobSubmissionClient

    ray_jobs = JobSubmissionClient(cluster.dashboard_url)
    deadline = time.monotonic() + timeout_s
    while (status := str(ray_jobs.get_job_status(ray_job_id))) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    return status


@pytest.mark.slow
def test_a_crash_inside_training_fails_the_job_with_its_traceback(client, datasets, tiny_models, dataset_dir):
    broken = dataset_dir / "broken-model"
    shutil.copytree(tiny_models / "tiny-llama-chat", broken, dirs_exist_ok=True)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    body = dpo_request("dpo-crash", broken.as_uri(), datasets["dpo"])
    assert client.post("/post_training/preference_optimize/", json=body).status_code == 200
    status = wait_until_final(client, "dpo-crash")
    assert status["status"] == "failed" and status["error"], status
    log = client.get("/post_training/job/logs", params={"job_uuid": "dpo-crash"}).json()["log_lines"]
    assert any("Error" in line for line in log[-16:]), log[-16:]


@pytest.mark.own_machine  # `make test-faults`: beside the whole suite, Ray's memory monitor kills workers
def test_a_training_worker_lost_mid_job_restarts_and_resumes_from_its_checkpoint(client, datasets):
    """A Ray Train worker killed (as a preempted or lost node's would be): Ray Train restarts the
    group (`training.max_failures`), training resumes from the last epoch's checkpoint, trainer
    state included, and the adapter ends as good as an uninterrupted run's."""
    import os
    import signal

    from ray.util.state import list_actors

    epochs = {"n_iters": 0, "n_epochs": 40}  # 16 examples, 2 workers x 4: 2 steps an epoch, a checkpoint each
    body = sft_request("sft-resumed", datasets["sft"], **epochs)
    assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
    deadline = time.monotonic() + 300
    while not any(c["iters"] >= 10 for c in artifacts(client, "sft-resumed")["checkpoints"]):
        assert time.monotonic() < deadline, "no checkpoint of the fifth epoch"
        time.sleep(0.2)
    alive = [("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
    os.kill(list_actors(filters=alive)[-1].pid, signal.SIGKILL)  # the only job training now: one of its workers
    body = sft_request("sft-uninterrupted", datasets["sft"], **epochs)
    assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200

    resumed = wait_until_final(client, "sft-resumed", timeout_s=600)
    plain = wait_until_final(client, "sft-uninterrupted", timeout_s=600)
    assert resumed["status"] == "completed" and plain["status"] == "completed", (resumed, plain)
    lines = client.get("/post_training/job/logs", params={"job_uuid": "sft-resumed"}).json()["log_lines"]
    assert any("restarted after a worker was lost: resuming from step" in line for line in lines), lines[-20:]
    final = {s["job_uuid"]: [m["eval_loss"] for m in s["metrics"] if "eval_loss" in m][-1] for s in (resumed, plain)}
    print(f"\nvalidation loss after a worker was lost and training resumed: {final}")
    assert abs(final["sft-resumed"] - final["sft-uninterrupted"]) < 0.25 * final["sft-uninterrupted"] + 0.05, final
    assert max(c["iters"] for c in artifacts(client, "sft-resumed")["checkpoints"]) == 80


def artifacts(client: httpx.Client, job_uuid: str) -> dict:
    return client.get("/post_training/job/artifacts", params={"job_uuid": job_uuid}).json()


def test_a_killed_driver_fails_its_job_with_the_reason_and_frees_its_workers(client, datasets):
    """SIGKILL of a training job's driver (the OS's OOM killer, a lost head process): Ray ends
    its workers with it, and the platform records the job as failed, saying why."""
    import os
    import signal

    import psutil

    idle = free_cpus()
    body = sft_request("sft-driver-killed", datasets["sft"], n_iters=100_000)
    assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
    wait_until_training(client, "sft-driver-killed")
    config = os.path.join("jobs", "sft-driver-killed", "job.yaml")
    drivers = [p for p in psutil.process_iter(["cmdline"]) if "llamaray.training.job" in (p.info["cmdline"] or [])]
    (driver,) = [p for p in drivers if any(config in part for part in p.info["cmdline"])]  # not the shell
    driver.send_signal(signal.SIGKILL)
    status = wait_until_final(client, "sft-driver-killed", timeout_s=120)
    assert status["status"] == "failed" and "without reporting" in status["error"], status
    deadline = time.monotonic() + 60
    while free_cpus() < idle and time.monotonic() < deadline:
        time.sleep(0.5)
    assert free_cpus() >= idle, "the dead driver's Ray Train workers still hold their CPUs"
