"""Request counts, latency, generated tokens, vLLM's own engine metrics and agent steps reach
Prometheus through Ray's metrics agent."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.grafana import dashboard_series

from .conftest import MODEL_ID


def lines_of(text: str, metric: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(metric)]


def test_gateway_metrics_are_exported(client, metrics_port):
    for _ in range(3):
        assert (
            client.post("/v1/completions", json={"model": MODEL_ID, "prompt": "hi", "max_tokens": 5}).status_code == 200
        )

    def exported(text: str) -> bool:
        completions_ok = [
            line
            for line in lines_of(text, "ray_llamaray_requests_total")
            if 'route="/v1/completions"' in line and 'status="200"' in line
        ]
        latency = [
            line
            for line in lines_of(text, "ray_llamaray_request_latency_seconds_bucket")
            if 'route="/v1/completions"' in line
        ]
        tokens = [line for line in lines_of(text, "ray_llamaray_generated_tokens_total") if MODEL_ID in line]
        # vLLM's engine metrics (vllm:generation_tokens), as Ray names them, for the engine that answered.
        engine = [line for line in lines_of(text, "ray_vllm_generation_tokens") if MODEL_ID in line]
        return bool(
            engine
            and completions_ok
            and float(completions_ok[0].rsplit(" ", 1)[1]) >= 3
            and latency
            and tokens
            and float(tokens[0].rsplit(" ", 1)[1]) >= 15
        )

    # Ray's metrics agent exports on its own schedule, so wait for this test's requests to show.
    deadline = time.monotonic() + 90
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        if exported(text):
            break
        time.sleep(2)
    assert exported(text), [line for line in text.splitlines() if line.startswith("ray_llamaray_requests_total")]


def test_agent_steps_are_exported(client, metrics_port):
    from llamaray.models import teach

    from .test_agents_http import create, demo_agent, execute, user

    create(client, demo_agent("metered"))
    assert execute(client, "metered", user(teach.CODE_QUESTION))["response_message"]["content"] == teach.CODE_ANSWER

    def steps(text: str, step_type: str) -> list[str]:
        return [
            line
            for line in lines_of(text, "ray_llamaray_agent_step_seconds_count")
            if f'step_type="{step_type}"' in line
        ]

    deadline = time.monotonic() + 90
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        if steps(text, "tool_execution") and steps(text, "model_inference"):
            break
        time.sleep(2)
    assert steps(text, "tool_execution") and steps(text, "model_inference"), lines_of(text, "ray_llamaray_agent")


DASHBOARD = Path(__file__).resolve().parents[2] / "deployments" / "grafana" / "llamaray_dashboard.json"
# Series that exist only once a job ran or a shield fired; tests/unit/test_grafana_dashboard.py
# checks their names against the code that exports them.
LATER = ("ray_llamaray_training_", "ray_llamaray_data_job_", "ray_llamaray_agent_violations")


def test_the_grafana_dashboard_queries_series_the_platform_exports(client, metrics_port):
    """Runs after the tests above made traffic and agent steps: every series the dashboard's
    gateway, engine and agent panels query is in Ray's metrics export."""
    wanted = {name for name in dashboard_series(json.loads(DASHBOARD.read_text())) if not name.startswith(LATER)}
    deadline = time.monotonic() + 90
    missing = wanted
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
        missing = wanted - exported
        if not missing:
            break
        time.sleep(2)
    assert not missing, sorted(missing)
