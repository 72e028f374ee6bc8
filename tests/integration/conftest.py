"""One real platform per test session: a local Ray cluster on loopback, Serve HTTP, and vLLM
(the CPU build) on the tiny model. Starting it costs about a minute, so every integration test
shares it; tests that change its state (autoscaling) run last.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llamaray.serve.runtime import serve_env

REPO = Path(__file__).resolve().parents[2]

MODEL_ID = "tiny-llama-chat"
REWARD_MODEL_ID = "tiny-llama-reward"
AGENT_ID = "tiny-llama-agent"  # adapters the model builder taught (llamaray.models.teach)
GUARD_ID = "tiny-llama-guard"
PROMPT_GUARD_ID = "tiny-prompt-guard"  # a classifier the model builder taught Prompt Guard's labels
TARGET = "The secret code is banana-42."
PROMPTS = ["What is the secret code?", "Tell me the secret code.", "Which code is secret?", "Say the secret code."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def platform_args(models_dir: Path, data_dir: Path, dataset_roots: list[Path] = ()) -> dict:
    return {
        "data_dir": str(data_dir),
        # Checkpoints, Ray Train's runs and job outputs apart from the data dir: an NFS mount's stand-in.
        "storage_path": str(data_dir.with_name(f"{data_dir.name}-shared")),
        "dataset_roots": [str(root) for root in dataset_roots],
        "memory": {"max_document_bytes": 12_000_000, "chunk_size_tokens": 128, "chunk_overlap_tokens": 16},
        # A test server on 127.0.0.2 stands for a slow public host (test_busy_gateway_http).
        "outbound": {"allow_http": True, "allow_hosts": ["127.0.0.2"], "timeout_s": 20},
        # No keys until test_security_http writes some here: keys rotate without a restart.
        "security": {"api_keys_file": str(data_dir / "api-keys"), "admin_api_keys_file": str(data_dir / "admin-keys")},
        # Small inline sizes, so that a few dozen prompts already take the Ray Data job path.
        "data": {
            "sdg_inline_max_generations": 16,
            "batch_inline_max_prompts": 16,
            "batch_size": 32,
            "generator_num_cpus": 1,
            "scorer_num_cpus": 0.5,
        },
        # The guard is the taught adapter; short model calls, since most models here say noise.
        "agents": {
            "llama_guard_model": GUARD_ID,
            "prompt_guard_model": PROMPT_GUARD_ID,
            "max_tokens": 64,
            "max_tool_response_chars": 600,  # the agent's prompt is ~1,300 of the 2,048 tokens
            "sandbox": {"timeout_s": 5, "cpu_s": 5},
        },
        # The chat model's engine in the gateway's replica, as deployments/tiny.yaml (and local.yaml) run it.
        "gateway": {"engine_model": MODEL_ID},
        "models": [
            {
                "model_id": MODEL_ID,
                "path": str(models_dir / "tiny-llama-chat"),
                "aliases": ["llama3_8b_chat", "llama3_8b"],
                "adapters": {
                    AGENT_ID: str(models_dir / "tiny-llama-agent"),
                    GUARD_ID: str(models_dir / "tiny-llama-guard"),
                },
                "dtype": "float32",
                "enforce_eager": True,
                "max_model_len": 2048,
                "gpu_memory_utilization": 0.3,
                "max_ongoing_requests": 64,
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": 2,
                    "target_ongoing_requests": 6,
                    "upscale_delay_s": 3,
                    "downscale_delay_s": 10,
                },
            },
            {
                "model_id": PROMPT_GUARD_ID,
                "path": str(models_dir / PROMPT_GUARD_ID),
                "kind": "classifier",
                "dtype": "float32",
                "enforce_eager": True,
                "max_model_len": 512,
                "gpu_memory_utilization": 0.3,
                "num_cpus": 0.25,
            },
            {
                "model_id": REWARD_MODEL_ID,
                "path": str(models_dir / "tiny-llama-reward"),
                "kind": "reward",
                "aliases": ["llama3_405b_reward"],
                "dtype": "float32",
                "enforce_eager": True,
                "max_model_len": 1024,
                "gpu_memory_utilization": 0.3,
                "num_cpus": 0.5,
            },
        ],
    }


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Built for the session; `LLAMARAY_TEST_MODELS` names a directory `make models` already
    built, to rerun a test file without the few minutes of building and teaching."""
    from llamaray.models.tiny import build_tiny_models

    built = os.environ.get("LLAMARAY_TEST_MODELS")
    if built:
        return Path(built)
    out = tmp_path_factory.mktemp("models")
    build_tiny_models(out)
    return out


@pytest.fixture(scope="session")
def metrics_port() -> int:
    return free_port()


def prepare_environment() -> None:
    """What Ray's processes must inherit from the tests: Serve's settings, and this environment's
    `python` first on the PATH (a Ray Job's driver runs the first one; ENV.md), and W&B offline
    (no test reaches wandb.ai: a run's files stay in the job's directory)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.update(serve_env())
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


class LocalCluster:
    """A Ray cluster on loopback with the dashboard (the Jobs API and Ray Train need it), and
    the platform served on it. `restart()` stops both and starts them again on the same data
    dir and ports, as an operator restarting the cluster would."""

    live: set["LocalCluster"] = set()  # started and not stopped: the multi-node tests stop them first

    def __init__(self, metrics_port: int, args: dict) -> None:
        self.metrics_port = metrics_port
        self.dashboard_port = free_port()
        self.http_port = free_port()
        self.args = args
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.serving = False

    def start_ray(self) -> None:
        import ray

        LocalCluster.live.add(self)
        ray.init(
            num_cpus=6,  # logical: the gateway, engine replicas, the proxy and 2 training workers on 2 real cores
            _node_ip_address="127.0.0.1",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=self.dashboard_port,
            log_to_driver=False,
            configure_logging=False,
            _metrics_export_port=self.metrics_port,
        )

    def serve(self) -> None:
        from ray import serve

        from llamaray.serve.app import build_app

        serve.start(http_options={"host": "127.0.0.1", "port": self.http_port})
        serve.run(build_app(self.args), name="llamaray", route_prefix="/")
        self.serving = True
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail("the platform never became ready")

    def stop(self) -> None:
        import ray
        from ray import serve

        if self.serving:
            serve.shutdown()
            self.serving = False
        ray.shutdown()
        LocalCluster.live.discard(self)

    def restart(self) -> None:
        self.stop()
        self.start_ray()
        self.serve()


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    """Where tests put dataset files; a data root of the platform."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def datasets(dataset_dir: Path) -> dict[str, dict]:
    """Training sets: a secret-code dialog set for SFT and its preference pairs for DPO."""
    secret = dataset_dir / "secret.jsonl"
    prefs = dataset_dir / "prefs.jsonl"
    with secret.open("w") as sft, prefs.open("w") as dpo:
        for i in range(16):
            question = [{"role": "user", "content": PROMPTS[i % 4]}]
            sft.write(json.dumps({"dialog": question + [{"role": "assistant", "content": TARGET}]}) + "\n")
            dpo.write(json.dumps({"prompt": question, "chosen": TARGET, "rejected": "I will not tell you."}) + "\n")
    return {
        "sft": {"columns": {"dialog": "dialog"}, "content_url": secret.as_uri()},
        "dpo": {"columns": {"prompt": "dialog", "chosen": "text", "rejected": "text"}, "content_url": prefs.as_uri()},
    }


@pytest.fixture(scope="session")
def cluster(metrics_port, tiny_models, dataset_dir, tmp_path_factory) -> LocalCluster:
    prepare_environment()
    local = LocalCluster(metrics_port, platform_args(tiny_models, tmp_path_factory.mktemp("data"), [dataset_dir]))
    local.start_ray()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def ray_cluster(cluster) -> LocalCluster:
    return cluster


@pytest.fixture(scope="session")
def platform_url(request) -> str:
    """The platform under test; `LLAMARAY_TEST_PLATFORM_URL` names one already running (started
    with `platform_args`), to rerun a test file against it while developing."""
    running = os.environ.get("LLAMARAY_TEST_PLATFORM_URL")
    if running:
        return running
    cluster = request.getfixturevalue("cluster")
    cluster.serve()
    return cluster.url


@pytest.fixture()
def client(platform_url) -> httpx.Client:
    with httpx.Client(base_url=platform_url, timeout=120) as c:
        yield c


def ray_job_submit(cluster: LocalCluster, script: str, config: Path) -> subprocess.CompletedProcess:
    """`ray job submit --working-dir <repo> -- python <script> --config <config>`, as the README
    tells a user to run it, against the test cluster; waits for the job to end."""
    ray = Path(sys.executable).parent / "ray"
    command = [str(ray), "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(REPO)]
    return subprocess.run(
        [*command, "--", "python", script, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )


def sse_events(response: httpx.Response) -> list[dict]:
    """The JSON objects of an SSE response, in order (`[DONE]` excluded)."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events


CHAT_DEPLOYMENT = "Gateway"  # the deployment that hosts the chat model's engine (`gateway.engine_model`)


def chat_engine(ready: dict) -> dict:
    """The chat model's entry in `/ready` (the reward model has one too)."""
    (engine,) = [e for e in ready["engines"] if e["model"] == MODEL_ID]
    return engine


def running_requests(client: httpx.Client) -> int:
    return chat_engine(client.get("/ready").json())["running_requests"]


def pytest_collection_modifyitems(config, items):
    """Tests that restart the cluster run after all others, which share the first one; the
    multi-node tests, which stop it for a cluster of their own, run last."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("multinode") is not None,
            item.get_closest_marker("restarts_cluster") is not None,
        )
    )
