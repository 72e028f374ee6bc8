"""After the Ray cluster stops and starts again, the platform still has its jobs (training and
data), their datasets, its banks and its agents with their turns."""

from __future__ import annotations

import httpx
import pytest

from llamaray.models import teach

from .conftest import MODEL_ID
from .test_agents_http import create, demo_agent, execute, user
from .test_memory_banks_http import doc, query
from .test_post_training_http import (
    USER,
    final_checkpoint,
    llama_stack_answer,
    sft_request,
    wait_until_served,
    wait_until_training,
)


@pytest.mark.slow
@pytest.mark.restarts_cluster
def test_jobs_and_banks_survive_a_ray_restart(cluster, datasets):
    with httpx.Client(base_url=cluster.url, timeout=120) as client:
        created = client.post(
            "/memory_banks/create",
            params={"bank_uuid": "durable", "bank_name": "Durable"},
            json=[doc("d1", "The vault opens at midnight.", kind="fact")],
        )
        assert created.status_code == 200, created.text
        body = sft_request("sft-interrupted", datasets["sft"], n_iters=100_000)
        assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
        wait_until_training(client, "sft-interrupted")
        before = client.get("/post_training/job/status", params={"job_uuid": "sft-lora"}).json()
        before_logs = client.get("/post_training/job/logs", params={"job_uuid": "sft-lora"}).json()
        before_sdg = client.get("/data_jobs/status", params={"job_uuid": "sdg-job-1"}).json()
        create(client, demo_agent("durable-agent"))
        asked = execute(client, "durable-agent", user(teach.WEATHER_QUESTION))  # the client's tool to run
        assert asked["response_message"]["tool_calls"][0]["tool_name"] == "get_weather"

    cluster.restart()

    with httpx.Client(base_url=cluster.url, timeout=120) as client:
        after = client.get("/post_training/job/status", params={"job_uuid": "sft-lora"}).json()
        assert after == before and after["status"] == "completed"
        assert client.get("/post_training/job/logs", params={"job_uuid": "sft-lora"}).json() == before_logs
        assert final_checkpoint(client, "sft-lora").is_dir()
        served = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert f"{MODEL_ID}:sft-lora" in served and "secret-durable" in served  # a job's and a registered adapter
        assert llama_stack_answer(client, "secret-durable").startswith("The secret code is ban")
        dora = f"{MODEL_ID}:sft-dora-cli"  # a model deployed on its own comes back too
        wait_until_served(client, dora)
        assert client.post("/inference/chat_completion", json={"model": dora, "dialog": USER}).status_code == 200
        interrupted = client.get("/post_training/job/status", params={"job_uuid": "sft-interrupted"}).json()
        assert interrupted["status"] == "failed"
        assert "cluster stopped" in interrupted["error"]

        assert client.get("/data_jobs/status", params={"job_uuid": "sdg-job-1"}).json() == before_sdg
        sdg_output = client.get("/datasets/get", params={"dataset_id": before_sdg["output_dataset_id"]})
        assert sdg_output.status_code == 200 and sdg_output.json()["metadata"]["job_uuid"] == "sdg-job-1"

        # The agent and its first turn came back: the client's answer continues the conversation.
        kept = client.get("/agentic_system/get", params={"agent_id": "durable-agent"}).json()
        assert kept["turns"] == [asked]
        result = {
            "role": "tool",
            "content": "",
            "tool_responses": [{"tool_name": "get_weather", "content": teach.WEATHER_RESULT}],
        }
        assert execute(client, "durable-agent", result)["response_message"]["content"] == teach.WEATHER_ANSWER

        assert {"uuid": "durable", "name": "Durable"} in client.get("/memory_banks/get").json()
        (chunk,) = query(client, "durable", "when does the vault open", top_k=1)
        assert chunk["text"] == "The vault opens at midnight." and chunk["metadata"] == {"kind": "fact"}
