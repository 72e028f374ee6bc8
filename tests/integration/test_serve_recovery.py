"""An engine that dies answers 503, and Serve's health check replaces its replica."""

from __future__ import annotations

import signal
import time

import httpx
import psutil

from .conftest import CHAT_DEPLOYMENT, MODEL_ID, chat_engine


def replica_stats() -> dict:
    """The chat replica's stats, its pid among them, from the replica itself: `/ready` shows no pids."""
    from ray import serve

    handle = serve.get_deployment_handle(CHAT_DEPLOYMENT, "llamaray")
    return handle.stats.remote().result()


def test_dead_engine_is_a_503_then_the_replica_is_replaced(platform_url):
    with httpx.Client(base_url=platform_url, timeout=60) as c:
        assert "pid" not in chat_engine(c.get("/ready").json())
        engine = replica_stats()
        replica = psutil.Process(engine["pid"])
        cores = [
            p
            for p in replica.children(recursive=True)
            if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()
        ]
        assert cores, [p.name() for p in replica.children(recursive=True)]
        for core in cores:
            core.send_signal(signal.SIGKILL)

        body = {"model": MODEL_ID, "content": "hello", "max_tokens": 4}
        statuses = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and 503 not in statuses:
            statuses.add(c.post("/inference/completion", json=body).status_code)
            time.sleep(0.5)
        assert 503 in statuses and 500 not in statuses, statuses

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            ready = c.get("/ready")
            if ready.status_code == 200 and chat_engine(ready.json())["replica"] != engine["replica"]:
                break
            time.sleep(2)
        else:
            raise AssertionError("the replica with the dead engine was never replaced")
        assert c.post("/inference/completion", json=body).status_code == 200
