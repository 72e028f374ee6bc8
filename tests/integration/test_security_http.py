"""The platform as exposed to a network: keys on every operation, the keyless laptop mode's
Host and Origin checks, and requests that name URLs or file names on the running platform."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from openai import AuthenticationError, OpenAI

from .conftest import MODEL_ID, PROMPTS, chat_engine
from .test_memory_banks_http import doc
from .test_post_training_http import sft_request

KEY = "sk-llamaray-test"
OTHER = "sk-second"
ADMIN = "sk-admin"


@pytest.fixture
def keys(cluster, platform_url):
    """Keys (and an admin key) in the platform's key files for the length of a test: the
    gateway re-reads them when they change."""
    security = cluster.args["security"]
    files = Path(security["api_keys_file"]), Path(security["admin_api_keys_file"])
    files[0].write_text(f"{KEY}\n{OTHER}\n")
    files[1].write_text(f"{ADMIN}\n")
    try:
        yield files
    finally:
        for path in files:
            path.unlink()


def as_key(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def operations(openapi: dict) -> list[tuple[str, str]]:
    return [
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, item in openapi["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_every_operation_needs_a_key_once_there_are_keys(client, keys, platform_url):
    spec = client.get("/openapi.json").json()  # the schema stays public (security.docs)
    walked = operations(spec)
    assert len(walked) > 40
    public = {("GET", "/health"), ("GET", "/ready")}
    for method, path in walked:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            response = client.request(method, path, headers=headers)
            if (method, path) in public:
                assert response.status_code == 200, (method, path)
                continue
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    oai = OpenAI(base_url=f"{platform_url}/v1", api_key=KEY)
    assert MODEL_ID in [m.id for m in oai.models.list()]
    answer = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert answer.choices[0].message.content is not None
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{platform_url}/v1", api_key="sk-wrong").models.list()
    assert client.get("/agentic_system/list", headers=as_key(OTHER)).status_code == 200  # any of the keys
    assert client.get("/agentic_system/list", headers=as_key(ADMIN)).status_code == 200  # an admin key too
    # /ready answers without a key (probes), saying only what is healthy; an admin key sees more
    public = client.get("/ready").json()["engines"]
    assert public and all("adapters" not in e and "running_requests" not in e and "pid" not in e for e in public)
    assert "adapters" in chat_engine(client.get("/ready", headers=as_key(ADMIN)).json())


def test_a_key_sees_only_what_it_created_and_an_admin_key_everything(client, keys):
    mine, theirs, admin = as_key(KEY), as_key(OTHER), as_key(ADMIN)
    old_jobs = [job["job_uuid"] for job in client.get("/post_training/jobs", headers=admin).json()][:2]
    bank = {"bank_uuid": "owned-bank", "bank_name": "mine"}
    created = client.post("/memory_banks/create", params=bank, json=[doc("d1", "Owned text.")], headers=mine)
    assert created.status_code == 200, created.text
    rows = "data:application/jsonl," + quote(json.dumps({"dialog": [{"role": "user", "content": "hi"}]}))
    dataset = {"uuid": "owned-data", "dataset": {"columns": {"dialog": "dialog"}, "content_url": rows}}
    assert client.post("/datasets/create", json=dataset, headers=mine).status_code == 200
    agent = {"uuid": "owned-agent", "instructions": "Be brief.", "model": MODEL_ID, "memory_bank_uuids": ["owned-bank"]}
    assert client.post("/agentic_system/create", json=agent, headers=mine).status_code == 200

    job = {"prompts": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 4, "run_as_job": True}
    submitted = client.post("/synthetic_data_generation/generate", json={**job, "job_uuid": "owned-job"}, headers=mine)
    assert submitted.status_code == 200, submitted.text
    query = {"bank_uuid": "owned-bank", "query": "text"}
    for headers, seen in ((mine, True), (theirs, False), (admin, True)):
        banks = [b["uuid"] for b in client.get("/memory_banks/get", headers=headers).json()]
        assert ("owned-bank" in banks) is seen
        assert client.post("/memory_bank/query", json=query, headers=headers).status_code == (200 if seen else 404)
        got = client.get("/datasets/get", params={"dataset_id": "owned-data"}, headers=headers)
        assert got.status_code == (200 if seen else 404)
        agents = [a["uuid"] for a in client.get("/agentic_system/list", headers=headers).json()]
        assert ("owned-agent" in agents) is seen
        status = client.get("/data_jobs/status", params={"job_uuid": "owned-job"}, headers=headers)
        assert status.status_code == (200 if seen else 404), status.text
        # jobs made before keys (the training tests') are nobody's: only an admin key sees them
        for job_uuid in old_jobs:
            status = client.get("/post_training/job/status", params={"job_uuid": job_uuid}, headers=headers)
            assert status.status_code == (200 if headers is admin else 404), status.text
        assert client.get("/post_training/jobs", headers=headers).json() == [] or headers is admin
    missing = client.post("/memory_bank/query", json=query, headers=theirs).json()["error"]
    assert missing["message"] == "memory bank 'owned-bank' does not exist"  # no more than that
    # ... and another key cannot change what is not its own
    assert client.delete("/memory_banks/drop", params={"bank_uuid": "owned-bank"}, headers=theirs).status_code == 404
    assert client.delete("/datasets/delete", params={"dataset_id": "owned-data"}, headers=theirs).status_code == 404
    sdg = {"dataset_id": "owned-data", "prompts": [], "prompt_column": "dialog"}  # nor read it in a job
    assert client.post("/synthetic_data_generation/generate", json=sdg, headers=theirs).status_code == 404
    deleted = client.delete("/agentic_system/delete", params={"agent_id": "owned-agent"}, headers=theirs)
    assert deleted.status_code == 404
    for job_uuid in old_jobs:
        cancel = client.post("/post_training/job/cancel", params={"job_uuid": job_uuid}, headers=theirs)
        assert cancel.status_code == 404
    assert client.post("/data_jobs/cancel", params={"job_uuid": "owned-job"}, headers=theirs).status_code == 404
    assert client.post("/data_jobs/cancel", params={"job_uuid": "owned-job"}, headers=mine).status_code == 200


def test_without_keys_a_rebinding_name_and_a_cross_site_request_are_refused(client):
    assert client.get("/v1/models").status_code == 200  # loopback, no keys: make serve's mode
    rebound = client.get("/v1/models", headers={"Host": "evil.example"})
    assert rebound.status_code == 400 and "Host" in rebound.json()["error"]["message"]
    cancel = client.post(
        "/post_training/job/cancel", params={"job_uuid": "sft-lora"}, headers={"Origin": "https://evil.example"}
    )
    assert cancel.status_code == 403 and "cross-origin" in cancel.json()["error"]["message"]
    preflight = client.options(
        "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403


class ConnectionCounter:
    """A TCP listener on loopback that counts who connects: what a fetch must never reach."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def loopback_urls(port: int) -> list[str]:
    forms = ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "[::ffff:127.0.0.1]", "localhost"]
    return [f"{scheme}://{host}:{port}/data.jsonl" for host in forms for scheme in ("https", "http")]


def test_no_dataset_url_reaches_the_cluster_inside(client, datasets):
    inside = ConnectionCounter()
    columns = {"dialog": "dialog"}
    for url in loopback_urls(inside.port):
        dataset = {"columns": columns, "content_url": url}
        register = client.post("/datasets/create", json={"uuid": "inside", "dataset": dataset})
        assert register.status_code == 400 and register.json()["error"]["param"] == "dataset.content_url", url
        train = client.post("/post_training/supervised_fine_tune/", json=sft_request("inside", dataset))
        assert train.status_code == 400 and "content_url" in train.json()["error"]["param"], url
    assert inside.connections == 0
    assert client.get("/datasets/get", params={"dataset_id": "inside"}).status_code == 404


@pytest.mark.parametrize("name", ["../../jobs/data/secret_code", "/tmp/evil", "..", ".hidden", "a/b", "x" * 200])
def test_output_names_that_are_paths_are_refused_and_nothing_is_written(client, cluster, name):
    data_dir = Path(cluster.args["data_dir"])
    before = set(data_dir.parent.rglob("*"))
    body = {"prompts": [{"role": "user", "content": PROMPTS[0]}], "output_dataset_id": name, "run_as_job": True}
    sdg = client.post("/synthetic_data_generation/generate", json=body)
    assert sdg.status_code == 422 and sdg.json()["error"]["param"] == "output_dataset_id", sdg.text
    assert set(data_dir.parent.rglob("*")) == before
