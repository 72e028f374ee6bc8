"""The Llama Stack inference routes over real HTTP, on real vLLM in Ray Serve."""

from __future__ import annotations

import time

import pytest

from .conftest import MODEL_ID, PROMPT_GUARD_ID, REWARD_MODEL_ID, running_requests, sse_events

USER = {"message": {"role": "user", "content": "What is the capital of France?"}}


def test_health_ready_and_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and all(engine["healthy"] for engine in ready["engines"])
    assert {engine["model"] for engine in ready["engines"]} == {MODEL_ID, REWARD_MODEL_ID, PROMPT_GUARD_ID}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for route in (
        "/inference/completion",
        "/inference/chat_completion",
        "/inference/batch_completion",
        "/inference/batch_chat_completion",
    ):
        assert "post" in paths[route]


def test_completion_with_logprobs_and_max_tokens(client):
    body = {"model": MODEL_ID, "content": "Once upon a time", "max_tokens": 8, "logprobs": True}
    first = client.post("/inference/completion", json=body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["stop_reason"] == "max_tokens"
    assert len(answer["logprobs"]["tokens"]) == 8 and all(lp <= 0 for lp in answer["logprobs"]["token_logprobs"])
    assert (
        client.post("/inference/completion", json=body).json()["content"] == answer["content"]
    )  # greedy is deterministic


def test_draft_model_ids_resolve_to_the_served_model(client):
    body = {"content": "hello", "max_tokens": 4}
    by_alias = client.post("/inference/completion", json={**body, "model": "llama3_8b"}).json()
    by_id = client.post("/inference/completion", json={**body, "model": MODEL_ID}).json()
    assert by_alias == by_id


def test_completion_stream_matches_the_whole_answer(client):
    body = {"model": MODEL_ID, "content": "The weather today", "max_tokens": 12}
    whole = client.post("/inference/completion", json=body).json()
    with client.stream("POST", "/inference/completion", json={**body, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = sse_events(response)
    assert "".join(c["text_delta"] for c in chunks) == whole["content"]
    assert [c["stop_reason"] for c in chunks][-1] == "max_tokens"
    assert all(c["stop_reason"] == "not_stopped" for c in chunks[:-1])


def test_sampling_strategies(client):
    base = {"model": MODEL_ID, "content": "Tell me a story", "max_tokens": 16}
    greedy = client.post("/inference/completion", json=base).json()["content"]
    samples = {
        client.post(
            "/inference/completion",
            json={**base, "sampling_params": {"strategy": "top_p", "temperature": 1.5, "top_p": 0.99}},
        ).json()["content"]
        for _ in range(3)
    }
    assert samples != {greedy}  # sampling at a high temperature wanders from the greedy answer
    top_k = client.post(
        "/inference/completion", json={**base, "sampling_params": {"strategy": "top_k", "temperature": 1.0, "top_k": 1}}
    )
    assert top_k.json()["content"] == greedy  # top-1 sampling is greedy


def test_chat_completion_and_its_stream_agree(client):
    body = {"model": MODEL_ID, "dialog": USER, "max_tokens": 10, "logprobs": True}
    whole = client.post("/inference/chat_completion", json=body).json()
    assert whole["stop_reason"] in ("max_tokens", "finished_ok") and whole["tool_calls"] == []
    with client.stream("POST", "/inference/chat_completion", json={**body, "stream": True}) as response:
        chunks = sse_events(response)
    assert "".join(c["text_delta"] for c in chunks) == whole["content"]
    assert chunks[-1]["stop_reason"] == whole["stop_reason"]


def test_tool_call_in_a_canned_assistant_message_parses_into_tool_calls(client):
    """The dialog ends with the assistant's own (canned) start: a custom tool call."""
    body = {
        "model": MODEL_ID,
        "dialog": {
            "message": {
                "role": "assistant",
                "content": '<function=get_weather>{"city": "Paris", "unit": "celsius"}</function>',
            },
            "message_history": [{"role": "user", "content": "What's the weather in Paris?"}],
        },
        "available_tools": [
            {
                "tool_name": "get_weather",
                "description": "Current weather",
                "parameters": {"city": {"param_type": "str", "required": True}},
            }
        ],
        "max_tokens": 2,
    }
    answer = client.post("/inference/chat_completion", json=body).json()
    assert answer["tool_calls"] == [{"tool_name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]
    with client.stream("POST", "/inference/chat_completion", json={**body, "stream": True}) as response:
        chunks = sse_events(response)
    assert [c["tool_call"] for c in chunks if c.get("tool_call")] == answer["tool_calls"]
    assert not any("<function=" in c["text_delta"] for c in chunks)


def test_builtin_tool_call_round_trips_through_history_and_prefill(client):
    """A past brave_search call and its result are in the prompt; the new one is parsed out."""
    body = {
        "model": MODEL_ID,
        "dialog": {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"tool_name": "web_search", "arguments": {"query": "weather in Paris"}}],
            },
            "message_history": [
                {"role": "user", "content": "Search for the weather"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"tool_name": "web_search", "arguments": {"query": "weather"}}],
                },
                {"role": "tool", "content": '{"result": "sunny"}'},
                {"role": "user", "content": "And in Paris?"},
            ],
        },
        "available_tools": [{"tool_name": "web_search"}],
        "max_tokens": 2,
    }
    answer = client.post("/inference/chat_completion", json=body).json()
    assert answer["tool_calls"] == [{"tool_name": "web_search", "arguments": {"query": "weather in Paris"}}]


def test_batch_routes_answer_in_order(client):
    prompts = ["one", "two two", "three three three"]
    singles = [
        client.post("/inference/completion", json={"model": MODEL_ID, "content": p, "max_tokens": 6}).json()
        for p in prompts
    ]
    batch = client.post(
        "/inference/batch_completion", json={"model": MODEL_ID, "content_batch": prompts, "max_tokens": 6}
    )
    assert batch.status_code == 200, batch.text
    assert batch.json() == singles
    dialogs = [{"message": {"role": "user", "content": p}} for p in prompts]
    chats = client.post(
        "/inference/batch_chat_completion", json={"model": MODEL_ID, "batch_dialogs": dialogs, "max_tokens": 6}
    ).json()
    assert len(chats) == 3 and all("tool_calls" in c for c in chats)


@pytest.mark.parametrize(
    "route, body, status, param",
    [
        ("/inference/completion", {"model": "no-such-model", "content": "hi"}, 404, "model"),
        ("/inference/chat_completion", {"model": "no-such-model", "dialog": USER}, 404, "model"),
        ("/inference/batch_completion", {"model": "no-such-model", "content_batch": ["hi"]}, 404, "model"),
        ("/inference/completion", {"model": MODEL_ID, "content": "hi", "max_tokens": -1}, 422, "max_tokens"),
        (
            "/inference/completion",
            {"model": MODEL_ID, "content": "hi", "sampling_params": {"top_p": 2}},
            422,
            "sampling_params.top_p",
        ),
        ("/inference/completion", {"model": MODEL_ID, "content": "hi", "max_token": 3}, 422, "max_token"),
        ("/inference/completion", {"model": MODEL_ID}, 422, "content"),
        (
            "/inference/completion",
            {"model": MODEL_ID, "content": "hi", "sampling_params": {"strategy": "top_p"}},
            400,
            "sampling_params.temperature",
        ),
        ("/inference/completion", {"model": MODEL_ID, "content": "word " * 3000}, 400, "content"),
        ("/inference/completion", {"model": MODEL_ID, "content": "hi", "max_tokens": 5000}, 400, "max_tokens"),
        ("/inference/completion", {"model": MODEL_ID, "content": "word " * 3000, "stream": True}, 400, "content"),
        (
            "/inference/chat_completion",
            {"model": MODEL_ID, "dialog": {"message": {"role": "user", "content": "x " * 3000}}},
            400,
            "dialog",
        ),
        ("/inference/batch_completion", {"model": MODEL_ID, "content_batch": []}, 422, "content_batch"),
        (
            "/inference/chat_completion",
            {"model": MODEL_ID, "dialog": {"message": {"role": "robot", "content": "x"}}},
            422,
            "dialog.message.role",
        ),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(client, route, body, status, param):
    response = client.post(route, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_malformed_json_is_a_4xx(client):
    response = client.post("/inference/completion", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_client_disconnect_frees_the_engine_slot(client, platform_url):
    """A stream the client abandons is aborted in the engine, not generated to the end."""
    import httpx

    body = {"model": MODEL_ID, "prompt": "Write a long story", "max_tokens": 1000, "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=platform_url, timeout=60) as streamer:
        with streamer.stream("POST", "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            for _ in range(3):
                next(lines)
            assert running_requests(client) == 1
    deadline = time.monotonic() + 5
    while running_requests(client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_requests(client) == 0
