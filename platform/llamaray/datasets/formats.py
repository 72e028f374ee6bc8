"""The dataset formats people have, mapped to dialogs (Llama Stack messages) in this one place.

- native: one `dialog` column, its messages as they are;
- alpaca: `instruction`, `output`, optional `input` and `system` -> [system], user: the
  instruction (a blank line, then the input), assistant: the output;
- sharegpt: `conversations`, a list of {from, value} (`human`/`user`, `gpt`/`assistant`,
  `system`, `function_call` (a JSON {name, arguments}), `observation`/`tool`) -> one message a turn;
- openai: `messages`, OpenAI chat messages (text parts, `tool_calls` with JSON `arguments`,
  `tool` messages; `tool_call_id` is not needed by the Llama format) -> one message each;
- text: a `text` column, plain language modelling (no dialog).

Declare the columns `json` (or `text`).
A dataset's `metadata.format` names its format; without it the columns tell. A Hugging Face
dataset saved to disk (`save_to_disk`) is read as rows by `datasets.readers` and is then any of
these.
"""

from __future__ import annotations

import json
from typing import Any

from llamaray.api.common import Message, Role
from llamaray.api.datasets import Dataset, DatasetColumnType
from llamaray.errors import InvalidRequestError

FORMATS = ("native", "alpaca", "sharegpt", "openai", "text")
SHAREGPT_ROLES = {
    "human": Role.user,
    "user": Role.user,
    "gpt": Role.assistant,
    "assistant": Role.assistant,
    "chatgpt": Role.assistant,
    "system": Role.system,
    "function_call": Role.assistant,
    "observation": Role.tool,
    "tool": Role.tool,
}


def format_of(dataset: Dataset, param: str = "dataset") -> str:
    declared = dataset.metadata.get("format")
    if declared is not None:
        if declared not in FORMATS:
            raise InvalidRequestError(
                f"unknown dataset format {declared!r}; expected one of {', '.join(FORMATS)}", f"{param}.metadata.format"
            )
        return declared
    columns = dataset.columns
    if any(kind is DatasetColumnType.dialog for kind in columns.values()):
        return "native"
    if "instruction" in columns and "output" in columns:
        return "alpaca"
    if "conversations" in columns:
        return "sharegpt"
    if "messages" in columns:
        return "openai"
    if columns.get("text") is DatasetColumnType.text:
        return "text"
    raise InvalidRequestError(
        "supervised fine-tuning needs a `dialog` column, Alpaca's instruction/output, ShareGPT's conversations, "
        f"OpenAI's messages, or a `text` column; the dataset has {dict((k, v.value) for k, v in columns.items())}",
        f"{param}.columns",
    )


def dialog_column(dataset: Dataset, kind: str) -> str:
    """The column a format's dialog is read from (what an error about a row names)."""
    if kind == "native":
        return next(name for name, k in dataset.columns.items() if k is DatasetColumnType.dialog)
    return {"alpaca": "instruction", "sharegpt": "conversations", "openai": "messages"}[kind]


def dialogs(dataset: Dataset, rows: list[dict[str, Any]], param: str = "dataset") -> list[list[Message]] | None:
    """Each row as a dialog, or None for a `text` dataset. A row that does not fit its format is
    a 400 naming the row and the column."""
    kind = format_of(dataset, param)
    if kind == "text":
        return None
    column = dialog_column(dataset, kind)
    mapped = []
    for i, row in enumerate(rows):
        try:
            mapped.append(_DIALOG[kind](row, column))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidRequestError(f"row {i} is not a {kind} row: {exc}", f"{param}.columns.{column}") from None
    return mapped


def _native(row: dict[str, Any], column: str) -> list[Message]:
    return [Message.model_validate(m) for m in row[column]]


def _alpaca(row: dict[str, Any], column: str) -> list[Message]:
    prompt = str(row["instruction"])
    if row.get("input"):
        prompt += "\n\n" + str(row["input"])
    system = [Message(role=Role.system, content=str(row["system"]))] if row.get("system") else []
    return [*system, Message(role=Role.user, content=prompt), Message(role=Role.assistant, content=str(row["output"]))]


def _sharegpt(row: dict[str, Any], column: str) -> list[Message]:
    messages = []
    for turn in row[column]:
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise ValueError(f"unknown speaker {turn['from']!r} (expected one of {', '.join(SHAREGPT_ROLES)})")
        if turn["from"] == "function_call":  # the call as JSON: {"name", "arguments"}
            call = json.loads(turn["value"])
            messages.append(_with_call(call["name"], call.get("arguments", {})))
        else:
            messages.append(Message(role=role, content=str(turn["value"])))
    return messages


def _openai(row: dict[str, Any], column: str) -> list[Message]:
    messages = []
    for message in row[column]:
        role = {"developer": "system"}.get(message["role"], message["role"])
        content = message.get("content") or ""
        if isinstance(content, list):  # text parts
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        calls = [
            {"tool_name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}
            for c in message.get("tool_calls") or []
        ]
        messages.append(Message(role=Role(role), content=content, tool_calls=calls))
    return messages


def _with_call(name: str, arguments: Any) -> Message:
    call = {"tool_name": name, "arguments": _arguments(arguments)}
    return Message(role=Role.assistant, content="", tool_calls=[call])


def _arguments(arguments: Any) -> dict[str, Any]:
    parsed = json.loads(arguments) if isinstance(arguments, str) else (arguments or {})
    if not isinstance(parsed, dict):
        raise ValueError("a tool call's arguments are a JSON object")
    return parsed


_DIALOG = {"native": _native, "alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai}
