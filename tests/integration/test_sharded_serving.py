"""Sharded replicas, really run: the tiny models over 2 CPU workers (vLLM's multiprocess
executor, one core each, ENV.md), each as its own Serve application beside the platform, with
the placement group its config asks for. Greedy output must be the unsharded replica's, token
for token; a replica that loses a worker process must be replaced by Serve."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from llamaray.config import ModelConfig
from llamaray.engines.protocol import EngineRequest, GenerationParams
from llamaray.serve.engine_deployment import deployment_name, engine_deployment

from .conftest import CHAT_DEPLOYMENT, MODEL_ID, REWARD_MODEL_ID

QUESTIONS = ["Once upon a time", "Ray is a framework for", "What is the weather like in Paris?", "def main():"]
CONVERSATIONS = [
    [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    for q, a in [("What is Ray?", "A framework."), ("Tell me a story.", "Once upon a time there was a robot.")]
]


def sharded(tiny_models, name: str, kind: str = "chat", **settings) -> ModelConfig:
    return ModelConfig(
        **{
            "model_id": f"{name}-sharded",
            "path": str(tiny_models / name),
            "kind": kind,
            "dtype": "float32",
            "enforce_eager": True,
            "max_model_len": 512,
            "gpu_memory_utilization": 0.3,
            "num_cpus": 0.5,
            **settings,
        }
    )


@pytest.fixture()
def deploy(platform_url):
    """Deploys a model as a Serve application of its own; deletes it after the test."""
    from ray import serve

    apps: list[str] = []

    def run(model: ModelConfig):
        app = model.model_id
        serve.run(engine_deployment(model), name=app, route_prefix=None)
        apps.append(app)
        return serve.get_app_handle(app)

    yield run
    for app in apps:
        serve.delete(app)


def greedy(handle, prompt: str) -> str:
    request = EngineRequest(f"greedy-{time.monotonic_ns()}", prompt, GenerationParams(max_tokens=24))
    return handle.generate.remote(request).result().sequences[0].text


def platform_handle(model_id: str, kind: str = "chat"):
    from ray import serve

    if model_id == MODEL_ID:
        return serve.get_deployment_handle(CHAT_DEPLOYMENT, "llamaray")
    return serve.get_deployment_handle(deployment_name(ModelConfig(model_id=model_id, path="-", kind=kind)), "llamaray")


def engine_workers(replica_pid: int) -> list[psutil.Process]:
    """The replica's vLLM worker processes (under its engine-core process)."""
    children = psutil.Process(replica_pid).children(recursive=True)
    return [p for p in children if "Worker" in " ".join(p.cmdline())]


@pytest.mark.slow
def test_tensor_parallel_replica_says_what_the_unsharded_one_says_and_is_replaced_when_a_worker_dies(
    deploy, tiny_models
):
    from ray import serve

    model = sharded(tiny_models, "tiny-llama-chat", tensor_parallel_size=2)
    handle = deploy(model)
    unsharded = platform_handle(MODEL_ID)
    for question in QUESTIONS:
        assert greedy(handle, question) == greedy(unsharded, question), question

    status = serve.status().applications[model.model_id].deployments[deployment_name(model)]
    assert status.replica_states.get("RUNNING") == 1
    pid = handle.stats.remote().result()["pid"]
    workers = engine_workers(pid)
    assert len(workers) == 2, [p.cmdline() for p in psutil.Process(pid).children(recursive=True)]
    os.kill(workers[1].pid, signal.SIGKILL)

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            stats = handle.stats.remote().result(timeout_s=10)
            if stats["pid"] != pid and stats["healthy"]:
                break
        except Exception:  # the dying replica, or none yet
            pass
        time.sleep(2)
    else:
        raise AssertionError("the replica that lost a worker was not replaced")
    assert greedy(handle, QUESTIONS[0]) == greedy(unsharded, QUESTIONS[0])


def test_pipeline_parallel_replica_says_what_the_unsharded_one_says(deploy, tiny_models):
    """Compiled (not eager, no LoRA): vLLM's CPU build sets up the second stage only in its
    compile warm-up, which costs this replica about a minute to start."""
    model = sharded(
        tiny_models, "tiny-llama-chat", pipeline_parallel_size=2, enforce_eager=False, lora={"max_loras": 0}
    )
    handle = deploy(model)
    unsharded = platform_handle(MODEL_ID)
    for question in QUESTIONS:
        assert greedy(handle, question) == greedy(unsharded, question), question


def test_the_reward_model_shards_with_the_same_options(deploy, tiny_models):
    handle = deploy(sharded(tiny_models, "tiny-llama-reward", kind="reward", tensor_parallel_size=2))
    unsharded = platform_handle(REWARD_MODEL_ID, "reward")
    scores = handle.score.remote(CONVERSATIONS).result()
    assert scores == pytest.approx(unsharded.score.remote(CONVERSATIONS).result(), rel=1e-4, abs=1e-5)
