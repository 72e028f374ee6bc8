"""Nothing a client sends makes the platform answer 500 or hang, or restarts an engine.

Two fuzzers against the running platform, over ids that exist (a bank with a non-ASCII
document, a dataset, an agent, a data job), so requests reach the services and not only a 404:

- mutations of a valid request of every route: each field dropped, nulled, retyped, made huge,
  given 2^64, NaN, NUL, a lone surrogate or deep nesting, plus bodies that are not JSON objects;
- Schemathesis (its CLI, a client nobody here wrote) over `/openapi.json`, with the same ids.

Both print how many cases they sent; every answer must be below 500, in time.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.integration.conftest import AGENT_ID, MODEL_ID, REWARD_MODEL_ID, chat_engine

EMBEDDING_ID = "all-MiniLM-L6-v2"
BANK, DATASET, AGENT = "fuzz-bank", "fuzz-dataset", "fuzz-agent"
DOC = "résumé-ü"  # a non-ASCII id, which the Milvus filter once could not name
DEEP = 3000  # nesting levels of the deep value: deeper than Python's parsers recurse
TIMEOUT_S = 90


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def document(uuid: str, text: str) -> dict:
    return {"uuid": uuid, "content": base64.b64encode(text.encode()).decode(), "metadata": {"lang": "fr"}}


@pytest.fixture(scope="module")
def fuzz_ids(platform_url: str) -> dict[str, str]:
    """The resources the fuzzed requests name, made once; a data job cancelled at once gives a
    job id, which the training and job routes then find taken (409) instead of starting work."""
    with httpx.Client(base_url=platform_url, timeout=120) as client:
        return _make_fuzz_ids(client)


def _make_fuzz_ids(client: httpx.Client) -> dict[str, str]:
    created = client.post(
        "/memory_banks/create", params={"bank_uuid": BANK, "bank_name": "fuzz"}, json=[document(DOC, "un CV")]
    )
    assert created.status_code in (200, 409), created.text
    rows = "data:," + json.dumps({"dialog": [user("hi"), {"role": "assistant", "content": "yo"}], "text": "hi"})
    dataset = {"uuid": DATASET, "dataset": {"columns": {"dialog": "dialog", "text": "text"}, "content_url": rows}}
    assert client.post("/datasets/create", json=dataset).status_code in (200, 409)
    agent = {"uuid": AGENT, "instructions": "Answer.", "model": AGENT_ID}
    assert client.post("/agentic_system/create", json=agent).status_code in (200, 409)
    job = client.post(
        "/synthetic_data_generation/generate",
        json={"prompts": [user("hi")], "run_as_job": True, "max_tokens": 2, "job_uuid": "fuzz-job"},
    )
    assert job.status_code in (200, 409), job.text
    client.post("/data_jobs/cancel", params={"job_uuid": "fuzz-job"})
    return {"bank_uuid": BANK, "dataset_id": DATASET, "agent_id": AGENT, "job_uuid": "fuzz-job"}


def valid_requests(ids: dict[str, str]) -> list[tuple[str, str, dict, Any]]:
    """(method, path, query, body) of a valid request per route; whatever would start lasting
    work (a training job, a data job) names the taken job id, so a valid mutation is a 409."""
    chat = [user("hi")]
    sft = {
        "job_uuid": ids["job_uuid"],
        "model": MODEL_ID,
        "dataset": {"columns": {"dialog": "dialog"}, "content_url": "data:,{}"},
        "validation_dataset": {"columns": {"dialog": "dialog"}, "content_url": "data:,{}"},
        "algorithm": "lora",
        "algorithm_config": {"lora_attn_modules": ["q_proj"], "apply_lora_to_mlp": False, "rank": 4, "alpha": 8},
        "optimizer_config": {"optimizer_type": "adamw", "lr": 0.001, "lr_min": 0.0001, "weight_decay": 0.0},
        "training_config": {"n_epochs": 1, "batch_size": 1, "shuffle": False, "n_iters": 1},
    }
    bank = {"bank_uuid": ids["bank_uuid"]}
    return [
        ("POST", "/inference/completion", {}, {"model": MODEL_ID, "content": "hi", "max_tokens": 2}),
        ("POST", "/inference/chat_completion", {}, {"model": MODEL_ID, "messages": chat, "max_tokens": 2}),
        ("POST", "/inference/batch_completion", {}, {"model": MODEL_ID, "content_batch": ["a", "b"], "max_tokens": 2}),
        (
            "POST",
            "/inference/batch_chat_completion",
            {},
            {"model": MODEL_ID, "batch_dialogs": [{"message": user("hi")}], "max_tokens": 2},
        ),
        (
            "POST",
            "/v1/chat/completions",
            {},
            {"model": MODEL_ID, "messages": chat, "max_tokens": 2, "stop": ["x"], "seed": 7, "top_k": 5},
        ),
        ("POST", "/v1/completions", {}, {"model": MODEL_ID, "prompt": ["hi"], "max_tokens": 2, "n": 1}),
        ("POST", "/v1/embeddings", {}, {"model": EMBEDDING_ID, "input": ["hi", "there"]}),
        ("POST", "/memory_bank/insert", bank, [document("fuzz-doc", "un texte")]),
        ("POST", "/memory_bank/get", bank, [DOC]),
        (
            "POST",
            "/memory_bank/query",
            {},
            {"bank_uuid": ids["bank_uuid"], "query": "CV", "top_k": 2, "filter": {"lang": "fr"}},
        ),
        (
            "POST",
            "/reward_scoring/score",
            {},
            {
                "model": REWARD_MODEL_ID,
                "prompt_generations": [{"dialog": chat, "k_generations": [{"role": "assistant", "content": "yo"}]}],
            },
        ),
        (
            "POST",
            "/synthetic_data_generation/generate",
            {},
            {"prompts": chat, "num_generations": 2, "max_tokens": 2, "job_uuid": ids["job_uuid"]},
        ),
        (
            "POST",
            "/datasets/create",
            {},
            {"uuid": "fuzz-new", "dataset": {"columns": {"text": "text"}, "content_url": 'data:,{"text": "a"}'}},
        ),
        ("POST", "/post_training/supervised_fine_tune/", {}, sft),
        (
            "POST",
            "/agentic_system/create",
            {},
            {"uuid": "fuzz-agent-2", "instructions": "Answer.", "model": AGENT_ID, "memory_bank_uuids": [BANK]},
        ),
        ("POST", "/agentic_system/execute", {}, {"agent_uuid": ids["agent_id"], "messages": chat}),
        ("POST", "/models/adapters/register", {}, {"adapter_id": "fuzz-adapter", "job_uuid": ids["job_uuid"]}),
    ]


DEEP_MARK = "<deeply nested value>"  # spliced in as raw JSON: Python's encoder would recurse too


MUTATIONS: list[tuple[str, Any]] = [
    ("null", None),
    ("string", "not the type"),
    ("integer", 12345),
    ("list", []),
    ("object", {}),
    ("2^64", 2**64),
    ("-2^64", -(2**64)),
    ("NaN", math.nan),
    ("Infinity", math.inf),
    ("NUL", "a\x00b"),
    ("surrogate", "a\ud800b"),
    ("huge", "x" * 200_000),
    ("deep", DEEP_MARK),
]


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every field of a body (a list's first item standing for its items)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list) and value:
        yield (*prefix, 0)
        yield from paths(value[0], (*prefix, 0))


def mutated(body: Any, path: tuple, new: Any, drop: bool = False) -> Any:
    body = json.loads(json.dumps(body))
    parent = body
    for part in path[:-1]:
        parent = parent[part]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return body


def cases(requests: list[tuple[str, str, dict, Any]]) -> Iterator[tuple[str, str, dict, bytes, str]]:
    for method, path, query, body in requests:
        yield method, path, query, b"not json", "not JSON"
        yield method, path, query, b"[]" if isinstance(body, dict) else b"{}", "wrong container"
        for name in query:
            for label, value in (("non-ASCII", "é\u2028"), ("huge", "x" * 5000), ("NUL", "a\x00b")):
                yield method, path, {**query, name: value}, _encode(body), f"query {name}: {label}"
        for field in paths(body):
            if isinstance(field[-1], str):
                yield method, path, query, _encode(mutated(body, field, None, drop=True)), f"{field}: dropped"
            for label, value in MUTATIONS:
                yield method, path, query, _encode(mutated(body, field, value)), f"{field}: {label}"


def _encode(body: Any) -> bytes:
    # Python's json writes NaN, Infinity and lone surrogates (as \ud800): what a careless client sends.
    text = json.dumps(body, allow_nan=True)
    return text.replace(json.dumps(DEEP_MARK), "[" * DEEP + "0" + "]" * DEEP).encode()


def replica_ids(client: httpx.Client) -> set[str]:
    return {engine["replica"] for engine in client.get("/ready").json()["engines"]}


def test_mutations_of_valid_requests_never_answer_500(client: httpx.Client, fuzz_ids):
    before = replica_ids(client)
    failures, sent, started = [], 0, time.monotonic()
    with httpx.Client(base_url=str(client.base_url), timeout=TIMEOUT_S) as fuzz:
        for method, path, query, body, label in cases(valid_requests(fuzz_ids)):
            sent += 1
            headers = {"content-type": "application/json"}
            try:
                response = fuzz.request(method, path, params=query, content=body, headers=headers)
            except httpx.TimeoutException:
                failures.append(f"{method} {path} [{label}]: no answer in {TIMEOUT_S} s")
                continue
            if response.status_code >= 500:
                failures.append(f"{method} {path} [{label}]: {response.status_code} {response.text[:200]}")
        # A body larger than limits.max_body_bytes is refused before it is read.
        big = fuzz.post("/v1/embeddings", content=b"[" + b" " * (33 << 20) + b"]", headers=headers)
        sent += 1
        assert big.status_code == 413, big.text
    print(f"\nmutation fuzz: {sent} cases in {time.monotonic() - started:.0f} s, {len(failures)} failures")
    assert not failures, "\n".join(failures[:40])
    assert replica_ids(client) == before  # no engine replica was restarted by any of it
    assert chat_engine(client.get("/ready").json())["healthy"]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(platform_url: str, client: httpx.Client, fuzz_ids, tmp_path: Path):
    before = replica_ids(client)
    # Every id parameter names a resource that exists; bodies name the chat model and ask for
    # two tokens, so that generated requests reach the services quickly.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "\n".join(
            [
                "[parameters]",
                *(f'"query.{name}" = "{value}"' for name, value in fuzz_ids.items()),
                '"query.bank_name" = "fuzz"',
                f'"path.model" = "{MODEL_ID}"',
                '"body.max_tokens" = 2',
            ]
        )
    )
    st = Path(sys.executable).parent / "st"
    command = [str(st), "--config-file", str(config), "run", f"{platform_url}/openapi.json"]
    options = ["--checks", "not_a_server_error", "--max-examples", "10", "--request-timeout", str(TIMEOUT_S)]
    options += ["--phases", "examples,coverage,fuzzing", "--seed", "1", "--no-color"]
    done = subprocess.run([*command, *options], capture_output=True, text=True, timeout=900)
    summary = [line for line in done.stdout.splitlines() if "generated" in line or "passed" in line]
    print("\nschemathesis:", *summary[-3:], sep="\n  ")
    failures = done.stdout[done.stdout.find("FAILURES") :] if "FAILURES" in done.stdout else done.stdout[-6000:]
    assert done.returncode == 0, failures[:8000]
    assert replica_ids(client) == before
