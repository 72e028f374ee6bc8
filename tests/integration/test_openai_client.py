"""The official `openai` client, unchanged, against the platform's /v1."""

from __future__ import annotations

import json

import openai
import pytest

from .conftest import MODEL_ID, PROMPT_GUARD_ID, REWARD_MODEL_ID

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture()
def oai(platform_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform_url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_ids(oai):
    ids = {m.id for m in oai.models.list()}
    assert {MODEL_ID, "llama3_8b_chat"} <= ids


def test_models_lists_every_kind_with_what_it_derives_from(oai):
    """What `/v1/embeddings` and `/reward_scoring/score` take is listed too, each with its kind."""
    cards = {m.id: m.model_extra for m in oai.models.list()}
    assert cards[MODEL_ID]["kind"] == "chat" and cards[MODEL_ID]["parent"] is None
    assert cards["llama3_8b_chat"]["kind"] == "chat" and cards["llama3_8b_chat"]["parent"] == MODEL_ID
    assert cards[REWARD_MODEL_ID]["kind"] == "reward" and cards["llama3_405b_reward"]["parent"] == REWARD_MODEL_ID
    assert cards[PROMPT_GUARD_ID]["kind"] == "classifier"
    assert cards["all-MiniLM-L6-v2"]["kind"] == "embedding"
    assert oai.embeddings.create(model="all-MiniLM-L6-v2", input="listed").data


def test_chat_completion_with_usage_logprobs_and_n(oai):
    r = oai.chat.completions.create(
        model=MODEL_ID, messages=MESSAGES, max_tokens=6, temperature=1.0, logprobs=True, top_logprobs=2, n=2
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.completion_tokens == sum(len(c.logprobs.content) for c in r.choices)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert len(r.choices[0].logprobs.content[0].top_logprobs) == 2


def test_chat_stream_joins_to_the_whole_answer(oai):
    whole = oai.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=10, temperature=0)
    stream = oai.chat.completions.create(
        model=MODEL_ID,
        messages=MESSAGES,
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_stop_sequences_and_max_tokens(oai):
    r = oai.completions.create(model=MODEL_ID, prompt="abc", max_tokens=20, temperature=0)
    text = r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    if len(text) > 3:
        stop = text[2:4]
        cut = oai.completions.create(model=MODEL_ID, prompt="abc", max_tokens=20, temperature=0, stop=[stop])
        assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].text


def test_tools_and_tool_calls(oai):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    canned = '<function=get_weather>{"city": "Paris"}</function>'
    messages = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": canned}]
    r = oai.chat.completions.create(
        model=MODEL_ID,
        messages=messages,
        tools=tools,
        max_tokens=2,
        temperature=0,
        extra_body={"continue_final_message": True, "echo": True},
    )
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls"

    stream = oai.chat.completions.create(
        model=MODEL_ID,
        messages=messages,
        tools=tools,
        max_tokens=2,
        temperature=0,
        stream=True,
        extra_body={"continue_final_message": True, "echo": True},
    )
    calls = [tc for chunk in stream for choice in chunk.choices for tc in (choice.delta.tool_calls or [])]
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]

    # The call and its result go back in; the conversation continues.
    followup = messages[:1] + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    assert oai.chat.completions.create(model=MODEL_ID, messages=followup, tools=tools, max_tokens=3).choices


def test_completions_with_several_prompts_echo_and_logprobs(oai):
    r = oai.completions.create(
        model=MODEL_ID, prompt=["one", "two"], max_tokens=4, temperature=0, logprobs=2, echo=True
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text.startswith("one") and r.choices[1].text.startswith("two")
    assert len(r.choices[0].logprobs.tokens) == 4
    streamed = oai.completions.create(model=MODEL_ID, prompt="one", max_tokens=4, temperature=0, stream=True)
    assert "one" + "".join(c.choices[0].text for c in streamed if c.choices) == r.choices[0].text


def test_errors_map_to_the_clients_exceptions(oai):
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as too_long:
        oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "word " * 3000}])
    assert too_long.value.body["param"] == "messages"
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(model=MODEL_ID, messages=MESSAGES, temperature=5)
    with pytest.raises(openai.BadRequestError):  # refused by vLLM's own checks, still a 400
        oai.chat.completions.create(model=MODEL_ID, messages=MESSAGES, temperature=0, n=2)


def test_a_developer_message_is_the_system_prompt(oai):
    """OpenAI's newer models take their instructions as `developer`; it was a 500 once."""
    answer = oai.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "developer", "content": "Be brief."}, MESSAGES[1]], max_tokens=2
    )
    assert answer.choices[0].finish_reason in ("length", "stop")
    with pytest.raises(openai.BadRequestError) as bad:  # arguments that are JSON, but not an object
        oai.chat.completions.create(
            model=MODEL_ID,
            messages=[
                *MESSAGES,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                },
            ],
            max_tokens=2,
        )
    assert bad.value.body["param"] == "messages[2].tool_calls"


CITY_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"enum": ["Paris", "Rome"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"utc": {"type": "boolean"}},
                "required": ["utc"],
                "additionalProperties": False,
            },
        },
    },
]
WEATHER = [{"role": "user", "content": "Weather in Paris?"}]


def test_one_model_by_id(oai):
    assert oai.models.retrieve(MODEL_ID).id == MODEL_ID
    assert oai.models.retrieve("sentence-transformers/all-MiniLM-L6-v2").model_extra["kind"] == "embedding"
    with pytest.raises(openai.NotFoundError) as missing:
        oai.models.retrieve("no-such-model")
    assert "no-such-model" in missing.value.body["message"]


def test_response_format_json_schema_and_json_object(oai):
    """A random tiny model answers in shape: vLLM's structured outputs allow only tokens that keep
    the answer valid JSON of the schema."""
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    r = oai.chat.completions.create(
        model=MODEL_ID,
        messages=MESSAGES,
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}},
    )
    answer = json.loads(r.choices[0].message.content)
    assert answer["answer"] in ("yes", "no") and isinstance(answer["sure"], bool) and set(answer) == {"answer", "sure"}
    streamed = oai.chat.completions.create(
        model=MODEL_ID,
        messages=MESSAGES,
        max_tokens=40,
        temperature=0,
        stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}},
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert json.loads(text)["answer"] in ("yes", "no")
    r = oai.chat.completions.create(
        model=MODEL_ID, messages=MESSAGES, max_tokens=200, temperature=0, response_format={"type": "json_object"}
    )
    assert r.choices[0].message.content.startswith("{")
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(
            model=MODEL_ID, messages=MESSAGES, response_format={"type": "json_schema", "json_schema": {"name": "x"}}
        )
    assert bad.value.body["param"] == "response_format.json_schema"


def test_tool_choice_named_and_required(oai):
    named = oai.chat.completions.create(
        model=MODEL_ID,
        messages=WEATHER,
        tools=CITY_TOOLS,
        max_tokens=40,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] in ("Paris", "Rome")
    assert named.choices[0].message.content is None and named.choices[0].finish_reason == "stop"

    required = oai.chat.completions.create(
        model=MODEL_ID, messages=WEATHER, tools=CITY_TOOLS, max_tokens=80, tool_choice="required"
    )
    calls = required.choices[0].message.tool_calls
    if required.choices[0].finish_reason != "length":  # a long array of calls may be cut short
        assert calls and {c.function.name for c in calls} <= {"get_weather", "get_time"}
        assert required.choices[0].finish_reason == "tool_calls"

    stream = oai.chat.completions.create(
        model=MODEL_ID,
        messages=WEATHER,
        tools=CITY_TOOLS,
        max_tokens=40,
        stream=True,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    chunks = list(stream)
    calls = [tc for chunk in chunks for choice in chunk.choices for tc in (choice.delta.tool_calls or [])]
    assert [c.function.name for c in calls] == ["get_time"]
    assert isinstance(json.loads(calls[0].function.arguments)["utc"], bool)
    assert not any(choice.delta.content for chunk in chunks for choice in chunk.choices)

    with pytest.raises(openai.BadRequestError) as unknown:
        oai.chat.completions.create(
            model=MODEL_ID,
            messages=WEATHER,
            tools=CITY_TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert unknown.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as no_tools:
        oai.chat.completions.create(model=MODEL_ID, messages=WEATHER, tool_choice="required")
    assert no_tools.value.body["param"] == "tool_choice"


def test_image_parts_are_a_400_naming_the_part(oai):
    with pytest.raises(openai.BadRequestError) as image:
        oai.chat.completions.create(
            model=MODEL_ID,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                }
            ],
        )
    assert image.value.body["param"] == "messages[0].content[1].type"
    assert "image_url" in image.value.body["message"]
