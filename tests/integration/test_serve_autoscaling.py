"""Serve autoscaling: one replica becomes two under load and one again after it.

Runs last in the session (file order): it changes how many engines are up.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import CHAT_DEPLOYMENT, MODEL_ID, PROMPTS, chat_engine

DEPLOYMENT = CHAT_DEPLOYMENT  # the gateway's replicas scale with the engine they host


def running_replicas() -> int:
    from ray import serve

    deployment = serve.status().applications["llamaray"].deployments[DEPLOYMENT]
    return deployment.replica_states.get("RUNNING", 0)


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(1)
    return False


def adapter_answers_on_both_replicas(platform_url: str) -> None:
    """The LoRA job's adapter (test_post_training_http) on the replica that came up under load:
    it loads the adapter on its first request for it, with no restart and no redeploy."""
    adapter = f"{MODEL_ID}:sft-lora"
    body = {"model": adapter, "messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 12, "temperature": 0}
    with httpx.Client(base_url=platform_url, timeout=120) as c:
        if c.post("/v1/chat/completions", json=body).status_code == 404:
            return  # the training tests did not run in this session
        served_by: dict[int, list[str]] = {}
        for _ in range(8):
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda _: c.post("/v1/chat/completions", json=body).json(), range(6)))
            for answer in answers:
                assert answer["choices"][0]["message"]["content"].startswith("The secret code is ban"), answer
            for _ in range(10):  # /ready asks one replica, picked by Serve's router, for its stats
                stats = chat_engine(c.get("/ready").json())
                served_by[stats["replica"]] = stats["adapters"]
            if len(served_by) == 2 and all(adapter in names for names in served_by.values()):
                return
        raise AssertionError(f"the adapter was not served by both replicas: {served_by}")


@pytest.mark.slow
def test_scales_from_one_to_two_replicas_under_load_and_back(platform_url):
    assert running_replicas() == 1
    stop = threading.Event()
    served: list[int] = []

    def load() -> None:
        body = {"model": MODEL_ID, "prompt": "Tell me everything", "max_tokens": 400, "ignore_eos": True}
        with httpx.Client(base_url=platform_url, timeout=120) as c:
            while not stop.is_set():
                served.append(c.post("/v1/completions", json=body).status_code)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(16)]
    for w in workers:
        w.start()
    try:
        assert wait_for(lambda: running_replicas() == 2, timeout=150), "never scaled up to 2 replicas"
        ok_before = served.count(200)
        adapter_answers_on_both_replicas(platform_url)
        assert wait_for(lambda: served.count(200) > ok_before + 8, timeout=60)  # still serving with two
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=150)
    assert set(served) == {200}
    assert wait_for(lambda: running_replicas() == 1, timeout=120), "never scaled back down to 1 replica"
    with httpx.Client(base_url=platform_url, timeout=60) as c:
        assert c.post("/v1/completions", json={"model": MODEL_ID, "prompt": "hi", "max_tokens": 2}).status_code == 200
