"""The agentic system over HTTP on the running platform: real vLLM serving the taught agent and
guard adapters, the real sandbox, Milvus Lite, CodeShield."""

from __future__ import annotations

import time

import httpx
import pytest

from llamaray.models import teach

from .conftest import AGENT_ID, MODEL_ID, running_requests, sse_events
from .test_memory_banks_http import doc

CANNED = "I can't answer that. Can I help with something else?"


def demo_agent(uuid: str, **overrides) -> dict:
    body = {
        "uuid": uuid,
        "instructions": teach.DEMO_INSTRUCTIONS,
        "model": AGENT_ID,
        "available_tools": [t.model_dump(mode="json", exclude_none=True) for t in teach.demo_tools()],
        "executable_tools": ["code_interpreter"],
    }
    return {**body, **overrides}


def create(client: httpx.Client, body: dict) -> None:
    response = client.post("/agentic_system/create", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"agent_uuid": body["uuid"]}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def execute(client: httpx.Client, agent: str, *messages: dict, **extra) -> dict:
    response = client.post("/agentic_system/execute", json={"agent_uuid": agent, "messages": list(messages), **extra})
    assert response.status_code == 200, response.text
    return response.json()["turn"]


def step_types(turn: dict) -> list[str]:
    return [s["step_type"] for s in turn["steps"]]


def test_a_turn_runs_code_in_the_sandbox_and_answers_from_its_output(client):
    create(client, demo_agent("coder"))
    turn = execute(client, "coder", user(teach.CODE_QUESTION))
    assert step_types(turn) == ["model_inference", "tool_execution", "model_inference"]
    tool = turn["steps"][1]
    assert tool["tool_calls"] == [{"tool_name": "code_interpreter", "arguments": {"code": teach.CODE}}]
    assert tool["tool_responses"][0]["content"] == "completed\n[stdout]\n42\n[/stdout]"  # the sandbox ran it
    assert turn["response_message"]["content"] == teach.CODE_ANSWER
    assert turn["response_message"]["role"] == "assistant"

    with client.stream(
        "POST",
        "/agentic_system/execute",
        json={"agent_uuid": "coder", "messages": [user(teach.CODE_QUESTION)], "stream": True, "turn_history": []},
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    starts = [e["step_type"] for e in events if e["event_type"] == "step_start"]
    ends = [e["step_type"] for e in events if e["event_type"] == "step_end"]
    assert starts == ends == ["model_inference", "tool_execution", "model_inference"]
    last_inference = [e for e in events if e["step_uuid"] == events[-1]["step_uuid"]]
    text = "".join(e["response_text_delta"] or "" for e in last_inference if e["event_type"] == "step_progress")
    assert text == teach.CODE_ANSWER
    assert any(e["tool_call"] and e["tool_call"]["tool_name"] == "code_interpreter" for e in events)
    assert any(e["tool_response_delta"] and "42" in e["tool_response_delta"]["content"] for e in events)
    assert events[-1]["stop_reason"] == "finished_ok"

    kept = client.get("/agentic_system/get", params={"agent_id": "coder"}).json()
    assert len(kept["turns"]) == 2 and kept["agent"]["model"] == AGENT_ID
    assert kept["turns"][0]["response_message"]["content"] == teach.CODE_ANSWER


def test_a_client_tool_round_trip_across_two_executes(client):
    create(client, demo_agent("weather"))
    first = execute(client, "weather", user(teach.WEATHER_QUESTION))
    assert step_types(first) == ["model_inference"]  # not executable here: the client runs it
    assert first["response_message"]["tool_calls"] == [{"tool_name": "get_weather", "arguments": {"city": "Paris"}}]
    answer = {
        "role": "tool",
        "content": "",
        "tool_responses": [{"tool_name": "get_weather", "content": teach.WEATHER_RESULT}],
    }
    second = execute(client, "weather", answer)  # no turn_history: the server kept the first turn
    assert second["response_message"]["content"] == teach.WEATHER_ANSWER
    assert len(client.get("/agentic_system/get", params={"agent_id": "weather"}).json()["turns"]) == 2


def test_memory_retrieval_puts_the_right_document_in_the_step(client):
    created = client.post(
        "/memory_banks/create",
        params={"bank_uuid": "agent-facts", "bank_name": "Agent facts"},
        json=[
            doc("vault", "The vault opens at midnight with the brass key.", kind="fact"),
            doc("garden", "Tomatoes grow best in full sun with regular watering.", kind="fact"),
        ],
    )
    assert created.status_code == 200, created.text
    create(
        client,
        {
            "uuid": "librarian",
            "instructions": "Answer from the documents.",
            "model": MODEL_ID,
            "memory_bank_uuids": ["agent-facts"],
        },
    )
    turn = execute(client, "librarian", user("When does the vault open?"))
    assert step_types(turn) == ["memory_retrieval", "model_inference"]
    retrieval = turn["steps"][0]
    assert retrieval["documents"][0]["uuid"] == "vault"
    assert retrieval["documents"][0]["metadata"]["bank_uuid"] == "agent-facts"
    assert retrieval["scores"] == sorted(retrieval["scores"], reverse=True) and len(retrieval["scores"]) == 2


def test_the_readme_agent_grounds_itself_and_runs_code(client):
    """The README's example: a bank with one note, the code interpreter, an input shield."""
    uuid, text = teach.README_DOCUMENT
    created = client.post(
        "/memory_banks/create", params={"bank_uuid": "readme-notes", "bank_name": "Notes"}, json=[doc(uuid, text)]
    )
    assert created.status_code == 200, created.text
    create(
        client,
        demo_agent("readme", memory_bank_uuids=["readme-notes"], input_shields=[{"shield_type": "llama_guard"}]),
    )
    turn = execute(client, "readme", user(teach.CODE_QUESTION), stream=False)
    assert step_types(turn) == [
        "safety_filtering",
        "memory_retrieval",
        "model_inference",
        "tool_execution",
        "model_inference",
    ]
    assert [d["uuid"] for d in turn["steps"][1]["documents"]] == [uuid]
    assert turn["response_message"]["content"] == teach.CODE_ANSWER


def test_input_shield_blocks_one_prompt_and_passes_another(client):
    create(client, demo_agent("guarded", input_shields=[{"shield_type": "llama_guard"}]))
    blocked = execute(client, "guarded", user(teach.UNSAFE_QUESTION))
    assert step_types(blocked) == ["safety_filtering"]
    violation = blocked["steps"][0]["violation"]
    assert violation["violation_type"] == "S9" and "Indiscriminate Weapons" in violation["details"]
    assert blocked["response_message"]["content"] == CANNED

    # A fresh history: the tiny agent knows its lessons only as the first turn of a conversation.
    passed = execute(client, "guarded", user(teach.CODE_QUESTION), turn_history=[])
    assert step_types(passed) == ["safety_filtering", "model_inference", "tool_execution", "model_inference"]
    assert passed["steps"][0]["violation"] is None
    assert passed["response_message"]["content"] == teach.CODE_ANSWER


def test_output_shield_replaces_a_flagged_answer(client):
    create(
        client,
        demo_agent("mouthy", output_shields=[{"shield_type": "llama_guard", "params": {"model": "tiny-llama-guard"}}]),
    )
    turn = execute(client, "mouthy", user(teach.UNSAFE_ANSWER_QUESTION))
    assert step_types(turn) == ["model_inference", "safety_filtering"]
    assert turn["steps"][0]["text"] == teach.UNSAFE_ANSWER  # what the model said ...
    assert turn["steps"][1]["violation"]["violation_type"] == "S2"
    assert turn["response_message"]["content"] == CANNED  # ... is not what the user gets


def test_prompt_guard_blocks_a_jailbreak_and_lets_questions_through(client):
    create(client, demo_agent("wary", input_shields=[{"shield_type": "prompt_guard"}]))
    blocked = execute(client, "wary", user(teach.JAILBREAK_PROMPT))
    assert step_types(blocked) == ["safety_filtering"]
    violation = blocked["steps"][0]["violation"]
    assert violation["violation_type"] == "jailbreak" and "JAILBREAK probability" in violation["details"]
    assert "jailbreak" in blocked["response_message"]["content"]

    passed = execute(client, "wary", user(teach.CODE_QUESTION), turn_history=[])
    assert step_types(passed) == ["safety_filtering", "model_inference", "tool_execution", "model_inference"]
    assert passed["response_message"]["content"] == teach.CODE_ANSWER
    # An injection is not a jailbreak: the default mode is for what users write.
    assert execute(client, "wary", user(teach.INJECTION_TEXT), turn_history=[])["steps"][0]["violation"] is None


def test_prompt_guard_finds_an_injection_in_a_client_tool_response(client):
    shield = {"shield_type": "prompt_guard", "params": {"mode": "injection", "threshold": 0.8}}
    create(client, demo_agent("suspicious", input_shields=[shield]))
    first = execute(client, "suspicious", user(teach.WEATHER_QUESTION))
    assert first["steps"][0]["violation"] is None
    assert first["response_message"]["tool_calls"][0]["tool_name"] == "get_weather"
    answer = {
        "role": "tool",
        "content": "",
        "tool_responses": [{"tool_name": "get_weather", "content": teach.INJECTION_TEXT}],
    }
    second = execute(client, "suspicious", answer)
    assert step_types(second) == ["safety_filtering"]
    assert second["steps"][0]["violation"]["violation_type"] == "prompt_injection"


def test_code_guard_stops_insecure_code_before_the_sandbox(client):
    tools = [t.model_dump(mode="json", exclude_none=True) for t in teach.demo_tools()]
    tools[0]["input_shields"] = [{"shield_type": "code_guard"}]
    create(client, demo_agent("careful", available_tools=tools))
    turn = execute(client, "careful", user(teach.INSECURE_QUESTION))
    assert step_types(turn) == ["model_inference", "safety_filtering"]  # no tool_execution
    violation = turn["steps"][1]["violation"]
    assert violation["violation_type"] == "insecure_code" and "os-system" in violation["details"]
    assert turn["response_message"]["content"].startswith("The code was not run")


ESCAPE_REPORTS = [
    "FileNotFoundError",  # the host's files are not there
    "ConnectionRefusedError",  # loopback is the sandbox's own: the platform's port is not on it
    "BlockingIOError",  # the process cap
    "MemoryError",  # the address-space cap
    "stopped: output exceeded",
    "stopped: timed out after 5 s",
]


@pytest.mark.parametrize(("prompt", "report"), zip(teach.SANDBOX_ESCAPES, ESCAPE_REPORTS))
def test_a_model_trying_to_escape_the_sandbox_is_stopped_and_told(client, prompt, report):
    agent = f"escaper-{list(teach.SANDBOX_ESCAPES).index(prompt)}"
    create(client, demo_agent(agent))
    turn = execute(client, agent, user(prompt))
    assert step_types(turn)[:2] == ["model_inference", "tool_execution"]
    tool = turn["steps"][1]
    assert tool["tool_calls"] == [
        {"tool_name": "code_interpreter", "arguments": {"code": teach.SANDBOX_ESCAPES[prompt]}}
    ]
    assert report in tool["tool_responses"][0]["content"], tool["tool_responses"][0]["content"]
    assert client.get("/ready").status_code == 200
    # ... and the platform goes on serving turns.
    assert execute(client, agent, user(teach.CODE_QUESTION), turn_history=[])["response_message"]["content"] == (
        teach.CODE_ANSWER
    )


def test_a_client_that_leaves_mid_stream_frees_the_engine(client, platform_url):
    create(client, demo_agent("leaver", model=MODEL_ID, executable_tools=[]))
    with httpx.Client(base_url=platform_url, timeout=60) as other:
        with other.stream(
            "POST",
            "/agentic_system/execute",
            json={"agent_uuid": "leaver", "messages": [user("Tell me a story.")], "stream": True},
        ) as response:
            next(response.iter_lines())
    deadline = time.monotonic() + 15
    while running_requests(client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_requests(client) == 0


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "no-such-model"}, 404, "model"),
        ({"memory_bank_uuids": ["no-such-bank"]}, 404, "memory_bank_uuids"),
        ({"executable_tools": ["get_weather"]}, 400, "executable_tools"),
        ({"executable_tools": ["math"]}, 400, "executable_tools"),
        ({"input_shields": [{"shield_type": "llama_guard", "params": {"model": "no-guard"}}]}, 400, "input_shields"),
        ({"output_shields": [{"shield_type": "prompt_guard", "params": {"model": AGENT_ID}}]}, 400, "output_shields"),
        ({"input_shields": [{"shield_type": "prompt_guard", "params": {"mode": "loud"}}]}, 400, "params.mode"),
        ({"input_shields": [{"shield_type": "prompt_guard", "params": {"threshold": 2}}]}, 400, "params.threshold"),
        ({"input_shields": [{"shield_type": "bad"}]}, 422, "shield_type"),
    ],
)
def test_bad_agents_are_refused_naming_the_field(client, body, status, needle):
    response = client.post("/agentic_system/create", json=demo_agent("bad", **body))
    assert response.status_code == status, response.text
    assert needle in response.text
    assert client.get("/agentic_system/get", params={"agent_id": "bad"}).status_code == 404


def test_unknown_agents_are_404_and_deleted_ones_are_gone(client):
    missing = client.post("/agentic_system/execute", json={"agent_uuid": "nobody", "messages": [user("hi")]})
    assert missing.status_code == 404 and "agent_uuid" in missing.text
    assert client.delete("/agentic_system/delete", params={"agent_id": "nobody"}).status_code == 404
    create(client, demo_agent("short-lived"))
    assert client.post("/agentic_system/create", json=demo_agent("short-lived")).status_code == 409
    assert "short-lived" in [a["uuid"] for a in client.get("/agentic_system/list").json()]
    assert client.delete("/agentic_system/delete", params={"agent_id": "short-lived"}).status_code == 200
    assert client.get("/agentic_system/get", params={"agent_id": "short-lived"}).status_code == 404
