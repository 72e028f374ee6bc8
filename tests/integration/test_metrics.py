"""Request counts, latency and generated tokens reach Prometheus through Ray's metrics agent."""

from __future__ import annotations

import time

import httpx

from .conftest import MODEL_ID


def test_gateway_metrics_are_exported(client, metrics_port):
    for _ in range(3):
        assert client.post("/v1/completions", json={"model": MODEL_ID, "prompt": "hi", "max_tokens": 5}).status_code == 200
    wanted = ("ray_llamaray_requests_total", "ray_llamaray_request_latency_seconds_bucket", "ray_llamaray_generated_tokens_total")
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        if all(name in text for name in wanted):
            break
        time.sleep(2)
    missing = [name for name in wanted if name not in text]
    assert not missing, missing
    tokens = [line for line in text.splitlines() if line.startswith("ray_llamaray_generated_tokens_total") and MODEL_ID in line]
    assert tokens and float(tokens[0].rsplit(" ", 1)[1]) >= 15
    assert any('route="/v1/completions"' in line and 'status="200"' in line for line in text.splitlines() if line.startswith("ray_llamaray_requests_total"))
