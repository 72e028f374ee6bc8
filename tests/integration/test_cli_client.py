"""The `llamaray` command and `llamaray.client` against the real platform: what a user types
and what a user's Python calls, with nothing between them and the routes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from llamaray.api.datasets import CreateDatasetRequest, Dataset
from llamaray.api.inference import ChatCompletionRequest
from llamaray.api.memory_banks import MemoryBankDocument, QueryMemoryBankRequest
from llamaray.api.openai import EmbeddingRequest
from llamaray.client import AsyncLlamaRay, LlamaRay
from llamaray.errors import InvalidRequestError, NotFoundError

from .conftest import MODEL_ID, PROMPTS, REPO
from .test_post_training_http import greedy_answer, sft_request

LLAMARAY = str(Path(sys.executable).parent / "llamaray")
USER = {"role": "user", "content": PROMPTS[0]}


def cli(platform_url: str, *args: str, timeout: float = 60, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLAMARAY_URL": platform_url}
    return subprocess.run([LLAMARAY, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def test_the_sync_client_speaks_every_kind_of_route(platform_url, dataset_dir):
    with LlamaRay(platform_url) as lr:
        assert lr.health() == {"status": "ok"}
        assert MODEL_ID in [card.id for card in lr.openai.models().data]
        assert lr.openai.model(MODEL_ID).kind == "chat"

        request = ChatCompletionRequest(model=MODEL_ID, dialog={"message": USER}, max_tokens=8)
        answer = lr.inference.chat_completion(request)
        streamed = list(lr.inference.chat_completion(request.model_copy(update={"stream": True})))
        assert streamed[-1].stop_reason is not None
        assert "".join(chunk.text_delta for chunk in streamed) == answer.content  # greedy: the same words

        bank = "client-bank"
        documents = [MemoryBankDocument(uuid="d1", content=b"Ray Serve hosts the vLLM engines.")]
        lr.memory_banks.create_memory_bank(bank, "client", documents)
        chunks = lr.memory_banks.query_memory_bank(QueryMemoryBankRequest(bank_uuid=bank, query="vLLM")).chunks
        assert chunks[0].document_uuid == "d1"
        assert lr.memory_banks.post_get_memory_documents(bank, ["d1"])[0].content == documents[0].content
        assert lr.memory_banks.remove_memory_bank(bank)

        path = dataset_dir / "client.jsonl"
        path.write_text(json.dumps({"text": "hello"}) + "\n")
        dataset = Dataset(columns={"text": "text"}, content_url=path.as_uri())
        lr.datasets.create_dataset(CreateDatasetRequest(uuid="client-ds", dataset=dataset))
        assert lr.datasets.get_dataset("client-ds").content_url == path.as_uri()
        lr.datasets.delete_dataset("client-ds")

        # The platform's refusals arrive as the platform's own errors, naming the field.
        with pytest.raises(NotFoundError) as missing:
            lr.datasets.get_dataset("client-ds")
        assert missing.value.status_code == 404 and missing.value.param == "dataset_id"
        with pytest.raises(InvalidRequestError) as bad:
            lr.embeddings.embeddings(EmbeddingRequest(model="sentence-transformers/all-MiniLM-L6-v2", input=[10**9]))
        assert bad.value.status_code == 400 and bad.value.param == "input[0]"


def test_the_async_client_streams_as_an_async_iterator(platform_url):
    async def main() -> tuple[str, str]:
        async with AsyncLlamaRay(platform_url) as lr:
            request = ChatCompletionRequest(model=MODEL_ID, dialog={"message": USER}, max_tokens=8)
            whole = (await lr.inference.chat_completion(request)).content
            stream = await lr.inference.chat_completion(request.model_copy(update={"stream": True}))
            return whole, "".join([chunk.text_delta async for chunk in stream])

    whole, streamed = asyncio.run(main())
    assert whole == streamed


def test_the_cli_trains_follows_exports_and_reads_the_job(platform_url, ray_cluster, datasets, tiny_models, tmp_path):
    """`llamaray train CONFIG` submits, draws its bar until the job ends and exits 0; the jobs
    commands read it back (tables and --json); `llamaray export` merges its adapter into weights
    that transformers loads and that answer as the adapter does."""
    job = "sft-cli"
    request = sft_request(job, datasets["sft"], n_iters=8)
    request["resources"] = {"num_workers": 1}
    # W&B runs offline here (the tests' Ray cluster has WANDB_MODE=offline): its run files are kept.
    request["logger_config"] = {"eval_every_n_steps": 4, "report_to": ["tensorboard", "mlflow", "wandb"]}
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({"request": request}))

    trained = cli(platform_url, "train", str(config), timeout=400)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert f"submitted {job}" in trained.stdout and "completed" in trained.stdout
    assert "8/8" in trained.stderr and "loss=" in trained.stderr  # the bar: steps of max_steps, and the loss

    followed = cli(platform_url, "jobs", "follow", job)  # the bar again, for a job that has ended
    assert followed.returncode == 0 and "completed" in followed.stdout and "8/8" in followed.stderr
    status = json.loads(cli(platform_url, "jobs", "status", job, "--json").stdout)
    assert status["status"] == "completed" and status["metrics"][-1]["step"] == 8
    listed = cli(platform_url, "jobs", "list")
    assert listed.returncode == 0 and job in listed.stdout and "JOB_UUID" in listed.stdout
    logs = cli(platform_url, "jobs", "logs", job)
    assert "step 8/8" in logs.stdout
    artifacts = json.loads(cli(platform_url, "jobs", "artifacts", job, "--json").stdout)
    checkpoint = Path(artifacts["checkpoints"][-1]["path"].removeprefix("file://"))

    # Watched: validation every 4 steps (and at the end), the trackers' files, the curves.
    evaluated = [m["step"] for m in status["metrics"] if "eval_loss" in m]
    assert evaluated[:2] == [4, 8], status["metrics"]
    files = {name: Path(uri.removeprefix("file://")) for name, uri in artifacts["files"].items()}
    assert set(files) == {"plot", "tensorboard", "mlflow", "wandb"}, files
    assert list(files["tensorboard"].rglob("events.out.tfevents.*"))
    assert any(path.name == "eval_loss" for path in files["mlflow"].rglob("*") if "metrics" in path.parts)
    assert list(files["wandb"].rglob("offline-run-*/run-*.wandb")), list(files["wandb"].rglob("*"))
    assert files["plot"].read_bytes().startswith(b"\x89PNG")
    plotted = cli(platform_url, "jobs", "plot", job, "--out", str(tmp_path / "curves.png"))
    assert plotted.returncode == 0 and (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")

    out = tmp_path / "merged"
    exported = cli(platform_url, "export", job, "--out", str(out), timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    assert greedy_answer(out) == greedy_answer(tiny_models / "tiny-llama-chat", checkpoint)

    # The dashboard's Train tab lists the run under the job's name, finished.
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

    headers = get_auth_headers_if_auth_enabled({})  # what Ray's own clients send when it asks for its token
    answer = httpx.get(f"{ray_cluster.dashboard_url}/api/train/v2/runs/v1", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text[-2000:]
    runs = answer.json()["train_runs"]
    assert [run["status"] for run in runs if run["name"] == job] == ["FINISHED"], runs

    with LlamaRay(platform_url) as lr, pytest.raises(NotFoundError) as not_data:  # each family at its own routes
        lr.data_jobs.get_data_job_status(job)
    assert not_data.value.param == "job_uuid" and "not a data job" in not_data.value.message

    missing = cli(platform_url, "jobs", "status", "no-such-job")
    assert missing.returncode == 1 and "error 404 (job_uuid)" in missing.stderr


def test_the_cli_chats_once_and_in_a_conversation(platform_url):
    """`llamaray chat PROMPT` streams the greedy answer the route gives; without a prompt it reads
    prompts from its input and asks each with the conversation so far as the dialog's history."""
    with LlamaRay(platform_url) as lr:
        expected = lr.inference.chat_completion(
            ChatCompletionRequest(model=MODEL_ID, dialog={"message": USER}, max_tokens=12)
        ).content
    once = cli(platform_url, "chat", "-m", MODEL_ID, "--max-tokens", "12", PROMPTS[0])
    assert once.returncode == 0, once.stderr
    assert once.stdout == expected + "\n"
    as_json = json.loads(cli(platform_url, "chat", "-m", MODEL_ID, "--max-tokens", "12", "--json", PROMPTS[0]).stdout)
    assert as_json["content"] == expected and as_json["stop_reason"]

    env = {**os.environ, "LLAMARAY_URL": platform_url}
    talk = subprocess.run(
        [LLAMARAY, "chat", "--max-tokens", "12"],  # the default model: the first chat model served
        input=f"{PROMPTS[0]}\n\n{PROMPTS[0]}\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert talk.returncode == 0, talk.stderr
    with LlamaRay(platform_url) as lr:  # the second answer read the first exchange as its history
        history = [USER, {"role": "assistant", "content": expected}]
        followed = lr.inference.chat_completion(
            ChatCompletionRequest(model=MODEL_ID, dialog={"message": USER, "message_history": history}, max_tokens=12)
        ).content
    assert talk.stdout == f"{expected}\n{followed}\n"  # the empty line asked nothing; no prompt marker when piped


def test_the_cli_lists_models_and_works_a_bank(platform_url, tmp_path):
    models = cli(platform_url, "models", "list")
    assert models.returncode == 0 and MODEL_ID in models.stdout and "KIND" in models.stdout
    note = tmp_path / "note.md"
    note.write_text("# Serving\nRay Serve hosts the vLLM engines of the platform.\n")
    created = cli(platform_url, "banks", "create", "cli-bank", str(note))
    assert created.returncode == 0, created.stderr
    query = json.loads(cli(platform_url, "banks", "query", "cli-bank", "vLLM engines", "--json").stdout)
    assert query[0]["document_uuid"] == str(note) and "vLLM" in query[0]["text"]
    assert "cli-bank" in cli(platform_url, "banks", "list").stdout
    assert cli(platform_url, "banks", "drop", "cli-bank").returncode == 0
    gone = cli(platform_url, "banks", "query", "cli-bank", "vLLM")
    assert gone.returncode == 1 and "404" in gone.stderr


def test_the_cli_runs_a_batch_job_and_lists_it(platform_url, tmp_path):
    """`llamaray batch CONFIG` submits through POST /data_jobs/batch, follows the job's prompts
    to its end, and the job is in /data_jobs/list and `llamaray jobs list`."""
    config = tmp_path / "batch.yaml"
    prompts = [f"Count to {i}:" for i in range(6)]
    request = {"job_uuid": "batch-cli", "model": MODEL_ID, "content_batch": prompts, "max_tokens": 4}
    config.write_text(yaml.safe_dump({"request": request}))
    ran = cli(platform_url, "batch", str(config), "--json", timeout=400)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    status = json.loads(ran.stdout[ran.stdout.index("{") :])
    assert status["status"] == "completed" and status["output_dataset_id"] == "batch-cli"
    assert "6/6" in ran.stderr  # the bar counted the prompts
    with LlamaRay(platform_url) as lr:
        assert "batch-cli" in [job.job_uuid for job in lr.data_jobs.list_data_jobs()]
        assert lr.datasets.get_dataset("batch-cli").content_url
    assert "batch-cli" in cli(platform_url, "jobs", "list").stdout
    followed = cli(platform_url, "jobs", "follow", "batch-cli")  # a data job, read at its own routes
    assert followed.returncode == 0 and "OUTPUT_DATASET_ID" in followed.stdout and "6/6" in followed.stderr
    with LlamaRay(platform_url) as lr, pytest.raises(NotFoundError) as not_training:
        lr.post_training.get_training_job_status("batch-cli")
    assert not_training.value.param == "job_uuid" and "not a training job" in not_training.value.message
    again = cli(platform_url, "batch", str(config))  # the output dataset exists: refused before any job
    assert again.returncode == 1 and ("error 409" in again.stderr or "error 400" in again.stderr), again.stderr
