"""What an OpenAI request forces the answer to be, and how the answer is read back.

`response_format` (`json_object`, `json_schema`) and `tool_choice` (`required`, or a named
function) are honoured by vLLM's structured outputs: the engine may only sample tokens that keep
the answer valid JSON of the schema, so even a model that would not follow the instruction
answers in shape. A forced tool call is generated as JSON (not the Llama tool-call syntax the
prompt describes) and read back here:
  - a named function: the answer is that function's arguments (an object of its `parameters`);
  - `required`: the answer is a non-empty array of `{"name": ..., "parameters": {...}}`, one
    item per call, each name one of the request's tools (vLLM's own `required` schema).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llamaray.api import openai as oai
from llamaray.api.common import ToolCall
from llamaray.errors import InvalidRequestError

ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class ForcedOutput:
    json_schema: dict[str, Any] | None = None  # the answer is JSON of this schema
    json_object: bool = False  # the answer is some JSON object
    named_tool: str | None = None  # the answer is this tool's arguments
    required_tools: bool = False  # the answer is an array of tool calls

    @property
    def tool_calls(self) -> bool:
        return self.named_tool is not None or self.required_tools


def forced_output(request: oai.ChatCompletionRequest) -> ForcedOutput:
    """The request's `tool_choice` and `response_format`, checked (400 naming the field)."""
    fmt = request.response_format
    forced_call = _forced_call(request.tool_choice, {t.function.name: t.function for t in request.tools or []})
    if forced_call is not None:
        if fmt and fmt.type != "text":
            raise InvalidRequestError("a forced tool call cannot also follow response_format", "response_format")
        return forced_call
    if fmt is None or fmt.type == "text":
        return ForcedOutput()
    if fmt.type == "json_object":
        return ForcedOutput(json_object=True)
    if fmt.json_schema is None or not isinstance(fmt.json_schema.schema_, dict):
        raise InvalidRequestError("response_format json_schema needs json_schema.schema", "response_format.json_schema")
    return ForcedOutput(json_schema=fmt.json_schema.schema_)


def _forced_call(choice: Any, tools: dict[str, oai.FunctionDefinition]) -> ForcedOutput | None:
    """A named function's or `required`'s forced answer; None for `auto` and `none`."""
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if not isinstance(name, str):
            raise InvalidRequestError(
                'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
                "tool_choice",
            )
        if name not in tools:
            raise InvalidRequestError(f"tool_choice names {name!r}, not one of the request's tools", "tool_choice")
        return ForcedOutput(json_schema=tools[name].parameters or ANY_OBJECT, named_tool=name)
    if choice == "required":
        if not tools:
            raise InvalidRequestError('tool_choice "required" needs tools', "tool_choice")
        return ForcedOutput(json_schema=required_calls_schema(tools), required_tools=True)
    return None


def required_calls_schema(tools: dict[str, oai.FunctionDefinition]) -> dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {"name": {"enum": [name]}, "parameters": tool.parameters or ANY_OBJECT},
                    "required": ["name", "parameters"],
                }
                for name, tool in tools.items()
            ]
        },
    }


def forced_calls(forced: ForcedOutput, text: str) -> list[ToolCall]:
    """The tool calls of a forced answer; none if it was cut short (`max_tokens`) before its JSON
    closed, which the finish reason `length` then tells."""
    try:
        answer = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return []
    if forced.named_tool is not None:
        return [ToolCall(tool_name=forced.named_tool, arguments=answer)] if isinstance(answer, dict) else []
    items = answer if isinstance(answer, list) else []
    return [
        ToolCall(tool_name=item["name"], arguments=item["parameters"])
        for item in items
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("parameters"), dict)
    ]


class ForcedCallStream:
    """A stream's counterpart of `ToolCallStream` for a forced tool call: the JSON is not shown
    as content; its calls come at the end."""

    def __init__(self, forced: ForcedOutput) -> None:
        self.forced = forced
        self.text = ""

    def feed(self, delta: str) -> str:
        self.text += delta
        return ""

    def finish(self) -> tuple[str, list[ToolCall]]:
        return "", forced_calls(self.forced, self.text)
