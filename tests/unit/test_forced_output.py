"""tool_choice and response_format read into what the engine must produce, and read back: no Ray."""

from __future__ import annotations

import json

import pytest

from llamaray.api import openai as oai
from llamaray.errors import InvalidRequestError
from llamaray.inference.forced_output import ForcedCallStream, forced_calls, forced_output

TOOLS = [
    {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {}}}}},
    {"type": "function", "function": {"name": "b"}},
]


def request(**fields) -> oai.ChatCompletionRequest:
    return oai.ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_auto_and_text_force_nothing():
    for fields in ({}, {"tools": TOOLS, "tool_choice": "auto"}, {"response_format": {"type": "text"}}):
        forced = forced_output(request(**fields))
        assert forced.json_schema is None and not forced.json_object and not forced.tool_calls


def test_a_named_function_forces_its_parameters():
    forced = forced_output(request(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "a"}}))
    assert forced.named_tool == "a" and forced.json_schema == TOOLS[0]["function"]["parameters"]
    (call,) = forced_calls(forced, '{"x": 1}')
    assert call.tool_name == "a" and call.arguments == {"x": 1}
    assert forced_calls(forced, '{"x": ') == []  # cut short by max_tokens


def test_required_forces_an_array_of_calls_of_the_requests_tools():
    forced = forced_output(request(tools=TOOLS, tool_choice="required"))
    schema = forced.json_schema
    assert schema["type"] == "array" and schema["minItems"] == 1
    assert [item["properties"]["name"]["enum"] for item in schema["items"]["anyOf"]] == [["a"], ["b"]]
    answer = json.dumps([{"name": "b", "parameters": {}}, {"name": "a", "parameters": {"x": 2}}])
    assert [(c.tool_name, c.arguments) for c in forced_calls(forced, answer)] == [("b", {}), ("a", {"x": 2})]
    stream = ForcedCallStream(forced)
    assert stream.feed(answer[:10]) == "" and stream.feed(answer[10:]) == ""
    assert [c.tool_name for c in stream.finish()[1]] == ["b", "a"]


def test_response_formats():
    assert forced_output(request(response_format={"type": "json_object"})).json_object
    schema = {"type": "object", "properties": {"k": {"type": "boolean"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    assert forced_output(request(response_format=fmt)).json_schema == schema


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "zzz"}}}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "n"}}}, "response_format.json_schema"),
        ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(fields, param):
    with pytest.raises(InvalidRequestError) as refused:
        forced_output(request(**fields))
    assert refused.value.param == param
