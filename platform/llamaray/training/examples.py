"""Dataset rows as the examples TRL's trainers take.

SFT trains on every assistant turn of a dialog (TRL's prompt-completion form, one example per
turn, so the loss covers only the answers; `training_config.last_turn_only` for the last alone),
in any format `llamaray.datasets.formats` maps (a `dialog` column, Alpaca, ShareGPT, OpenAI
messages), or on a `text` column as plain language modelling. DPO needs `prompt`
(a dialog or text), `chosen` and `rejected` (text, or a dialog whose last message is the
answer). A dialog is rendered to text here by the prompt format that serves the model
(`llamaray.inference.prompt_format`: Llama 3.1's, or the tokenizer's chat template), so an
adapter sees at serving the prompt it learned on. The
checks name the column that is missing or wrong, so a bad dataset is a 4xx before any worker
starts.
"""

from __future__ import annotations

from typing import Any

from llamaray.api.common import Message, Role
from llamaray.api.datasets import Dataset, DatasetColumnType
from llamaray.datasets.formats import dialog_column, dialogs, format_of
from llamaray.errors import InvalidRequestError
from llamaray.inference.chat_format import BEGIN_OF_TEXT, Turn, chat_turns
from llamaray.inference.prompt_format import LLAMA3, PromptFormat

Example = dict[str, Any]


def turns(messages: list[dict[str, Any]]) -> list[Turn]:
    """A dialog column's messages as the chat template's turns (tool calls and tool output
    written as the model reads them at inference)."""
    return chat_turns(Message.model_validate(m) for m in messages)


def sft_examples(
    dataset: Dataset,
    rows: list[dict[str, Any]],
    param: str = "dataset",
    last_turn_only: bool = False,
    prompt_format: PromptFormat = LLAMA3,
) -> list[Example]:
    """One prompt-completion example per assistant turn of each dialog (its history the prompt,
    so every answer is in the loss once, in its context), or per dialog's last turn alone; a
    `text` dataset is plain language modelling. Rows in any format `datasets.formats` maps."""
    mapped = dialogs(dataset, rows, param)
    if mapped is None:
        return [{"text": row["text"]} for row in rows]
    examples = []
    for i, messages in enumerate(mapped):
        if not messages or messages[-1].role is not Role.assistant:
            column = dialog_column(dataset, format_of(dataset, param))
            raise InvalidRequestError(
                f"row {i}: the last message of column {column!r} must be the assistant's answer to train on",
                f"{param}.columns.{column}",
            )
        answers = [j for j, m in enumerate(messages) if m.role is Role.assistant]
        if last_turn_only:
            answers = answers[-1:]
        for j in answers:
            prompt, completion = prompt_format.training_pair(messages[:j], messages[j])
            examples.append({"prompt": prompt, "completion": completion})
    return examples


def dpo_examples(
    dataset: Dataset, rows: list[dict[str, Any]], param: str = "dataset", prompt_format: PromptFormat = LLAMA3
) -> list[Example]:
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
    return [_preference(row, conversational, prompt_format) for row in rows]


def _preference(row: dict[str, Any], conversational: bool, prompt_format: PromptFormat) -> Example:
    def answer(value: Any) -> str:
        return turns(value[-1:])[0]["content"] if isinstance(value, list) else str(value)

    if conversational:
        messages = [Message.model_validate(m) for m in row["prompt"]]

        def rendered(value: Any) -> str:
            message = Message.model_validate(value[-1]) if isinstance(value, list) else None
            return prompt_format.training_pair(messages, message or Message(role=Role.assistant, content=str(value)))[1]

        prompt, _ = prompt_format.training_pair(messages, Message(role=Role.assistant, content=""))
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
