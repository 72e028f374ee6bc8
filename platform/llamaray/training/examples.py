"""Dataset rows as the examples TRL's trainers take.

SFT trains on the last message of a `dialog` column (TRL's prompt-completion form, so the loss
covers only the answer) or on a `text` column as plain language modelling. DPO needs `prompt`
(a dialog or text), `chosen` and `rejected` (text, or a dialog whose last message is the
answer). A dialog is rendered to text here by the encoder that serves (`training_text`), not by
the tokenizer's chat template, so an adapter sees at serving the prompt it learned on. The
checks name the column that is missing or wrong, so a bad dataset is a 4xx before any worker
starts.
"""

from __future__ import annotations

from typing import Any

from llamaray.api.common import Message, Role
from llamaray.api.datasets import Dataset, DatasetColumnType
from llamaray.errors import InvalidRequestError
from llamaray.inference.chat_format import BEGIN_OF_TEXT, Turn, chat_turns, training_text

Example = dict[str, Any]


def turns(messages: list[dict[str, Any]]) -> list[Turn]:
    """A dialog column's messages as the chat template's turns (tool calls and tool output
    written as the model reads them at inference)."""
    return chat_turns(Message.model_validate(m) for m in messages)


def sft_examples(dataset: Dataset, rows: list[dict[str, Any]], param: str = "dataset") -> list[Example]:
    dialogs = [name for name, kind in dataset.columns.items() if kind is DatasetColumnType.dialog]
    if dialogs:
        column = dialogs[0]
        examples = []
        for i, row in enumerate(rows):
            messages = [Message.model_validate(m) for m in row[column]]
            if messages[-1].role is not Role.assistant:
                raise InvalidRequestError(
                    f"row {i}: the last message of column {column!r} must be the assistant's answer to train on",
                    f"{param}.columns.{column}",
                )
            prompt, completion = training_text(messages[:-1], messages[-1])
            examples.append({"prompt": prompt, "completion": completion})
        return examples
    if dataset.columns.get("text") is DatasetColumnType.text:
        return [{"text": row["text"]} for row in rows]
    raise InvalidRequestError(
        f"supervised fine-tuning needs a column of type `dialog` (or a `text` column named 'text'); "
        f"the dataset has {dict((k, v.value) for k, v in dataset.columns.items())}",
        f"{param}.columns",
    )


def dpo_examples(dataset: Dataset, rows: list[dict[str, Any]], param: str = "dataset") -> list[Example]:
    missing = [name for name in ("prompt", "chosen", "rejected") if name not in dataset.columns]
    if missing:
        raise InvalidRequestError(
            f"preference optimisation needs the columns prompt, chosen and rejected; missing: {', '.join(missing)}",
            f"{param}.columns",
        )
    for name in ("prompt", "chosen", "rejected"):
        if dataset.columns[name] not in (DatasetColumnType.dialog, DatasetColumnType.text):
            raise InvalidRequestError(f"column {name!r} must be of type dialog or text", f"{param}.columns.{name}")
    conversational = dataset.columns["prompt"] is DatasetColumnType.dialog
    return [_preference(row, conversational) for row in rows]


def _preference(row: dict[str, Any], conversational: bool) -> Example:
    def answer(value: Any) -> str:
        return turns(value[-1:])[0]["content"] if isinstance(value, list) else str(value)

    if conversational:
        messages = [Message.model_validate(m) for m in row["prompt"]]

        def rendered(value: Any) -> str:
            message = Message.model_validate(value[-1]) if isinstance(value, list) else None
            return training_text(messages, message or Message(role=Role.assistant, content=str(value)))[1]

        prompt, _ = training_text(messages, Message(role=Role.assistant, content=""))
        return {"prompt": prompt, "chosen": rendered(row["chosen"]), "rejected": rendered(row["rejected"])}
    prompt = row["prompt"] if isinstance(row["prompt"], str) else "\n".join(t["content"] for t in turns(row["prompt"]))
    return {"prompt": prompt, "chosen": answer(row["chosen"]), "rejected": answer(row["rejected"])}


def for_tokenizer(examples: list[Example], adds_bos: bool) -> list[Example]:
    """The examples as the worker's tokenizer must read them: TRL tokenizes a prompt with the
    tokenizer's special tokens, so a tokenizer that adds BOS itself gets the prompt without the
    BOS the encoder wrote, and the tokens are the ones serving sends (`add_special_tokens=False`)."""
    if not adds_bos:
        return examples
    return [
        {**e, "prompt": e["prompt"].removeprefix(BEGIN_OF_TEXT)} if isinstance(e.get("prompt"), str) else e
        for e in examples
    ]
