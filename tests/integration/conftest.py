"""One real platform per test session: a local Ray cluster on loopback, Serve HTTP, and vLLM
(the CPU build) on the tiny model. Starting it costs about a minute, so every integration test
shares it; tests that change its state (autoscaling) run last.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from llamaray.serve.runtime import SERVE_ENV

MODEL_ID = "tiny-llama-chat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def platform_args(models_dir: Path, data_dir: Path, dataset_roots: list[Path] = ()) -> dict:
    return {
        "data_dir": str(data_dir),
        "dataset_roots": [str(root) for root in dataset_roots],
        "models": [
            {
                "model_id": MODEL_ID,
                "path": str(models_dir / "tiny-llama-chat"),
                "aliases": ["llama3_8b_chat", "llama3_8b"],
                "dtype": "float32",
                "enforce_eager": True,
                "max_model_len": 1024,
                "gpu_memory_utilization": 0.3,
                "max_ongoing_requests": 64,
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": 2,
                    "target_ongoing_requests": 6,
                    "upscale_delay_s": 3,
                    "downscale_delay_s": 10,
                },
            }
        ],
    }


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    from llamaray.models.tiny import build_tiny_models

    out = tmp_path_factory.mktemp("models")
    build_tiny_models(out)
    return out


@pytest.fixture(scope="session")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def ray_cluster(metrics_port):
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.update(SERVE_ENV)
    ray.init(
        num_cpus=4,  # logical: the gateway, two engine replicas and the proxy on 2 real cores
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _metrics_export_port=metrics_port,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    """Where tests put dataset files; a data root of the platform."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def platform_url(ray_cluster, tiny_models, dataset_dir, tmp_path_factory) -> str:
    from ray import serve

    from llamaray.serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = platform_args(tiny_models, tmp_path_factory.mktemp("data"), [dataset_dir])
    serve.run(build_app(args), name="llamaray", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=10).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        pytest.fail("the platform never became ready")
    yield url
    serve.shutdown()


@pytest.fixture()
def client(platform_url) -> httpx.Client:
    with httpx.Client(base_url=platform_url, timeout=120) as c:
        yield c


def sse_events(response: httpx.Response) -> list[dict]:
    """The JSON objects of an SSE response, in order (`[DONE]` excluded)."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events


def running_requests(client: httpx.Client) -> int:
    (engine,) = client.get("/ready").json()["engines"]
    return engine["running_requests"]
