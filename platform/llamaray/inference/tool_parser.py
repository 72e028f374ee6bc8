"""Tool calls out of Llama 3.1 output, and the JSON calls chat templates ask for.

Parse order (API.md): the `<function=NAME>{json}</function>` tag, then `<tool_call>{json}</tool_call>`
blocks (the Hermes convention of Qwen's and SmolLM2's templates; the close may be missing when
the model stops at it), then a JSON object (`{"name": ..., "parameters"|"arguments": ...}`, with
or without `"type": "function"`), then a built-in call `NAME.call(query=...)`, then any other
python-tagged text as code_interpreter input.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from dataclasses import dataclass, field

from llamaray.api.common import BuiltinTool, ToolCall
from llamaray.inference.chat_format import MODEL_NAME_TO_BUILTIN, PYTHON_TAG

FUNCTION_TAG = re.compile(r"<function=(?P<name>[^>]+)>(?P<args>.*?)</function>", re.DOTALL)
MAX_CALL_NESTING = 32  # brackets in a built-in call's arguments; deeper is not a call
FUNCTION_CLOSE = "</function>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
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
    # Tags only up to the last close: an open tag after it would have the regex scan to the end
    # once per open tag (quadratic in a long output).
    tagged_end = text.rfind(FUNCTION_CLOSE)
    tagged_end = tagged_end + len(FUNCTION_CLOSE) if tagged_end >= 0 else 0
    calls = [_function_tag_call(m) for m in FUNCTION_TAG.finditer(text, 0, tagged_end)]
    calls = [c for c in calls if c is not None]
    if calls:
        rest = (FUNCTION_TAG.sub("", text[:tagged_end]) + text[tagged_end:]).replace(PYTHON_TAG, "")
        return ParsedOutput(rest.strip(), calls)
    if TOOL_CALL_OPEN in text:
        before, *blocks = text.split(TOOL_CALL_OPEN)  # linear, however many opens there are
        calls = [_json_call(block.split(TOOL_CALL_CLOSE, 1)[0]) for block in blocks]
        if calls and all(calls):
            return ParsedOutput(before.strip(), calls)

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
    except (json.JSONDecodeError, RecursionError):
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
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    arguments = obj.get("parameters", obj.get("arguments"))
    if not isinstance(arguments, dict):
        return None
    return ToolCall(tool_name=_builtin_name(obj["name"]), arguments=arguments)


def _builtin_call(text: str) -> ToolCall | None:
    """`NAME.call(k=v, ...)`: the arguments up to the parenthesis that closes the call, found in
    one pass of Python's tokenizer (so a `)` inside a string is not the end), then parsed once."""
    match = BUILTIN_CALL.match(text)
    if match is None:
        return None
    args_start = match.end()
    close = _closing_paren(text[args_start:])
    if close is None:
        return None
    try:
        call = ast.parse(f"f({text[args_start : args_start + close]})", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            return None
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return ToolCall(tool_name=_builtin_name(match.group("name")), arguments=arguments)


def _closing_paren(args: str) -> int | None:
    """Where the call whose arguments `args` begins is closed, or None (never closed, or nested
    deeper than any real call: the parser's recursion is never reached)."""
    depth = 1
    lines = io.StringIO(args).readline
    offsets = [0]
    for line in io.StringIO(args):
        offsets.append(offsets[-1] + len(line))
    try:
        for token in tokenize.generate_tokens(lines):
            if token.type != tokenize.OP:
                continue
            if token.string in "([{":
                depth += 1
                if depth > MAX_CALL_NESTING:
                    return None
            elif token.string in ")]}":
                depth -= 1
                if depth == 0:
                    row, col = token.start
                    return offsets[row - 1] + col
    except (tokenize.TokenError, SyntaxError):  # an unclosed string or bracket at the end
        return None
    return None


def _builtin_name(model_name: str) -> str:
    builtin = MODEL_NAME_TO_BUILTIN.get(model_name)
    return builtin.value if builtin else model_name
