"""Tool calls out of Llama 3.1 output.

Parse order (API.md): the `<function=NAME>{json}</function>` tag, then a JSON object
(`{"name": ..., "parameters": ...}`, with or without `"type": "function"`), then a built-in
call `NAME.call(query=...)`, then any other python-tagged text as code_interpreter input.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

from llamaray.api.common import BuiltinTool, ToolCall
from llamaray.inference.chat_format import MODEL_NAME_TO_BUILTIN, PYTHON_TAG

FUNCTION_TAG = re.compile(r"<function=(?P<name>[^>]+)>(?P<args>.*?)</function>", re.DOTALL)
BUILTIN_CALL = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.call\(", re.DOTALL)
# Special tokens a model may emit that are never part of an answer's text.
SPECIAL_TOKEN = re.compile(
    r"<\|(?:begin_of_text|end_of_text|start_header_id|end_header_id|eot_id|eom_id|finetune_right_pad_id|step_id|reserved_special_token_\d+)\|>"
)


@dataclass
class ParsedOutput:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)


def strip_special_tokens(text: str) -> str:
    return SPECIAL_TOKEN.sub("", text)


def parse_tool_calls(text: str) -> ParsedOutput:
    """Split model output into the text meant for the user and the tool calls it makes."""
    text = strip_special_tokens(text)
    calls = [_function_tag_call(m) for m in FUNCTION_TAG.finditer(text)]
    calls = [c for c in calls if c is not None]
    if calls:
        rest = FUNCTION_TAG.sub("", text).replace(PYTHON_TAG, "")
        return ParsedOutput(rest.strip(), calls)

    before, tagged, code = text.partition(PYTHON_TAG)
    candidate = code if tagged else text
    call = _json_call(candidate) or _builtin_call(candidate)
    if call is not None:
        return ParsedOutput(before.strip() if tagged else "", [call])
    if tagged and code.strip():
        return ParsedOutput(
            before.strip(), [ToolCall(tool_name=BuiltinTool.code_interpreter.value, arguments={"code": code.strip()})]
        )
    return ParsedOutput(text.replace(PYTHON_TAG, ""))


def _function_tag_call(match: re.Match[str]) -> ToolCall | None:
    try:
        arguments = json.loads(match.group("args"))
    except json.JSONDecodeError:
        return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(tool_name=match.group("name").strip(), arguments=arguments)


def _json_call(text: str) -> ToolCall | None:
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    arguments = obj.get("parameters", obj.get("arguments"))
    if not isinstance(arguments, dict):
        return None
    return ToolCall(tool_name=_builtin_name(obj["name"]), arguments=arguments)


def _builtin_call(text: str) -> ToolCall | None:
    """`NAME.call(k=v, ...)`: the shortest prefix that parses as a call of literals wins."""
    match = BUILTIN_CALL.match(text)
    if match is None:
        return None
    args_start = match.end()
    for close in (i for i, ch in enumerate(text) if ch == ")" and i >= args_start):
        try:
            call = ast.parse(f"f({text[args_start:close]})", mode="eval").body
            if not isinstance(call, ast.Call) or call.args:
                continue
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
        except (SyntaxError, ValueError):
            continue
        return ToolCall(tool_name=_builtin_name(match.group("name")), arguments=arguments)
    return None


def _builtin_name(model_name: str) -> str:
    builtin = MODEL_NAME_TO_BUILTIN.get(model_name)
    return builtin.value if builtin else model_name
