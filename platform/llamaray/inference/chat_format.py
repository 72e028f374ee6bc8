"""The Llama 3.1 prompt format: messages and tools in, prompt text out.

Follows the model's published format: each message is
`<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>`; tool output goes back
under the role `ipython`; built-in tools are announced with `Environment: ipython` and a
`Tools:` line in the system prompt; custom (zero-shot) tools are described as JSON in the
system prompt with the `<function=NAME>{args}</function>` calling convention. An assistant
message that called a tool ends with `<|eom_id|>` (a tool result is pending), not `<|eot_id|>`.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Iterable

from llamaray.api.common import (
    BuiltinTool,
    Message,
    Role,
    ToolCall,
    ToolDefinition,
    content_text,
)

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
EOM = "<|eom_id|>"
PYTHON_TAG = "<|python_tag|>"

# The names the model was trained on for our built-in tools; code_interpreter needs no name.
BUILTIN_TO_MODEL_NAME = {
    BuiltinTool.web_search: "brave_search",
    BuiltinTool.math: "wolfram_alpha",
    BuiltinTool.image_gen: "photogen",
}
MODEL_NAME_TO_BUILTIN = {v: k for k, v in BUILTIN_TO_MODEL_NAME.items()}

KNOWLEDGE_CUTOFF = "December 2023"

# Word for word as the model was trained on it: no line of it may be wrapped.
FUNCTION_TAG_INSTRUCTIONS = """Think very carefully before calling functions.
If you choose to call a function ONLY reply in the following format with no prefix or suffix:

<function=example_function_name>{"example_name": "example_value"}</function>

Reminder:
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Put the entire function call reply on one line
- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls
"""  # noqa: E501


def as_builtin(tool_name: str | BuiltinTool) -> BuiltinTool | None:
    try:
        return BuiltinTool(tool_name)
    except ValueError:
        return None


def header(role: str) -> str:
    return f"{START_HEADER}{role}{END_HEADER}\n\n"


def system_preamble(tools: list[ToolDefinition], today: date | None = None) -> str:
    """The part of the system prompt that announces tools; empty when there are none."""
    if not tools:
        return ""
    builtins = [b for b in (as_builtin(t.tool_name) for t in tools) if b is not None]
    custom = [t for t in tools if as_builtin(t.tool_name) is None]
    lines: list[str] = []
    if builtins:
        lines.append("Environment: ipython")
        named = [BUILTIN_TO_MODEL_NAME[b] for b in builtins if b in BUILTIN_TO_MODEL_NAME]
        if named:
            lines.append("Tools: " + ", ".join(named))
        lines.append("")
    today = today or date.today()
    lines.append(f"Cutting Knowledge Date: {KNOWLEDGE_CUTOFF}")
    lines.append(f"Today Date: {today.strftime('%d %B %Y')}")
    lines.append("")
    if custom:
        lines.append("You have access to the following functions:")
        lines.append("")
        for tool in custom:
            description = tool.description or ""
            lines.append(f"Use the function '{tool.tool_name}' to: {description}")
            spec = {"name": tool.tool_name, "description": description, "parameters": tool.parameters or {}}
            lines.append(json.dumps(spec))
            lines.append("")
        lines.append(FUNCTION_TAG_INSTRUCTIONS)
    return "\n".join(lines).rstrip("\n") + "\n\n"


def encode_tool_call(call: ToolCall) -> str:
    """One tool call as the model writes it."""
    builtin = as_builtin(call.tool_name)
    if builtin is BuiltinTool.code_interpreter:
        return PYTHON_TAG + str(call.arguments.get("code", ""))
    if builtin is not None:
        args = ", ".join(f"{k}={json.dumps(v)}" for k, v in call.arguments.items())
        return f"{PYTHON_TAG}{BUILTIN_TO_MODEL_NAME[builtin]}.call({args})"
    return f"<function={call.tool_name}>{json.dumps(call.arguments)}</function>"


Turn = dict[str, str]  # a chat-template turn: {"role": ..., "content": ...}


def chat_turns(messages: Iterable[Message]) -> list[Turn]:
    """Messages as chat-template turns, the one conversion that inference, reward scoring and
    training all use: a message's tool calls are written into its content as the model writes
    them, and tool output (a `tool` message, and each of a message's `tool_responses`) goes
    back under Llama 3.1's `ipython` role."""
    turns: list[Turn] = []
    for message in messages:
        role = "ipython" if message.role is Role.tool else message.role.value
        body = content_text(message.content) + "".join(encode_tool_call(c) for c in message.tool_calls)
        turns.append({"role": role, "content": body})
        turns.extend({"role": "ipython", "content": content_text(r.content)} for r in message.tool_responses)
    return turns


def encode_message(message: Message, *, close: bool = True) -> str:
    """A message and, after it, one `ipython` message per tool response it carries.

    `close=False` leaves an assistant message open so the model continues it (prefill).
    """
    turn, *responses = chat_turns([message])
    text = header(turn["role"]) + turn["content"]
    if close:
        text += EOM if message.tool_calls else EOT
    return text + "".join(header(r["role"]) + r["content"] + EOT for r in responses)


def encode_dialog(
    messages: Iterable[Message],
    tools: list[ToolDefinition] | None = None,
    *,
    today: date | None = None,
    continue_final_message: bool = True,
) -> str:
    """The prompt that asks the model for the next assistant message.

    A dialog that ends with an assistant message is a prefill (unless `continue_final_message`
    is off): that message stays open and the model continues it, so a client can fix how an
    answer starts.
    """
    messages = list(messages)
    tools = tools or []
    preamble = system_preamble(tools, today)
    prompt = BEGIN_OF_TEXT
    if messages and messages[0].role is Role.system:
        system, messages = messages[0], messages[1:]
        user_system = content_text(system.content)
        prompt += header("system") + preamble + user_system + EOT
    elif preamble:
        prompt += header("system") + preamble.rstrip("\n") + EOT
    prefill = continue_final_message and bool(messages) and messages[-1].role is Role.assistant
    for i, message in enumerate(messages):
        last = i == len(messages) - 1
        prompt += encode_message(message, close=not (prefill and last))
    if not prefill:
        prompt += header("assistant")
    return prompt


def training_text(prompt: list[Message], answer: Message) -> tuple[str, str]:
    """A dialog as a training pair, rendered by the encoder that serves: the prompt exactly as
    `encode_dialog` writes it, and the answer as the model must write it, closed by the token
    at which serving stops it (end of turn, or end of message after a tool call)."""
    answer_text = chat_turns([answer])[0]["content"] + (EOM if answer.tool_calls else EOT)
    return encode_dialog(prompt, continue_final_message=False), answer_text


def prefill_text(messages: list[Message]) -> str:
    """The assistant text a prefilled dialog already holds, which the response starts with."""
    if messages and messages[-1].role is Role.assistant:
        return chat_turns(messages[-1:])[0]["content"]
    return ""
