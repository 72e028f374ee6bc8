"""How a model's prompts are written: the Llama 3.1 format (ours, with tools and `ipython`) for
Llama 3.x checkpoints, the tokenizer's own chat template for any other (a Qwen, Mistral or
SmolLM2 checkpoint must not get Llama prompts it was never trained on).

A chat model's `prompt_format` (config) is `auto`, `llama3` or `chat_template`; `auto` reads the
tokenizer: Llama 3's header and end-of-turn tokens mean `llama3`. Serving and training take the
same object for a model, so an adapter trained here is served with the prompts it learned.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

from llamaray.api.common import Message, Role, ToolDefinition, content_text
from llamaray.errors import InvalidRequestError
from llamaray.inference.chat_format import EOM, EOT, encode_dialog, training_text

PromptFormatName = Literal["auto", "llama3", "chat_template"]
logger = logging.getLogger(__name__)
LLAMA3_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


class PromptFormat(Protocol):
    name: str

    def prompt(self, messages: list[Message], tools: list[ToolDefinition], continue_final_message: bool = True) -> str:
        """The text that asks the model for the next assistant message (or continues a prefill)."""
        ...

    def training_pair(self, prompt: list[Message], answer: Message) -> tuple[str, str]:
        """A prompt and the answer as the model must write it, closed where serving stops it."""
        ...

    def stop_tokens(self) -> list[str]:
        """Texts a chat turn stops at, beyond the model's EOS."""
        ...

    def keeps_special_tokens(self) -> bool:
        """Whether an answer keeps special tokens in its text (Llama's tool-call tags are parsed)."""
        ...

    def takes_tools(self) -> bool:
        """Whether tools reach the model's prompt (a template without them would drop them unseen)."""
        ...


class Llama3Format:
    name = "llama3"

    def prompt(self, messages: list[Message], tools: list[ToolDefinition], continue_final_message: bool = True) -> str:
        return encode_dialog(messages, tools, continue_final_message=continue_final_message)

    def training_pair(self, prompt: list[Message], answer: Message) -> tuple[str, str]:
        return training_text(prompt, answer)

    def stop_tokens(self) -> list[str]:
        return [EOT, EOM]

    def keeps_special_tokens(self) -> bool:
        return True

    def takes_tools(self) -> bool:
        return True


class ChatTemplateFormat:
    """The tokenizer's Jinja chat template, as `transformers` and `vllm serve` apply it. Tool calls
    a message carries are written as JSON in its text (the template's own tool syntax varies);
    tools are handed to templates that take them."""

    name = "chat_template"

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template: set prompt_format: llama3, or give it one")
        self.tokenizer = tokenizer

    def _turns(self, messages: list[Message]) -> list[dict[str, str]]:
        turns = []
        for message in messages:
            calls = [json.dumps({"name": c.tool_name, "arguments": c.arguments}) for c in message.tool_calls]
            text = "".join([content_text(message.content), *calls])
            role = "tool" if message.role is Role.tool else message.role.value
            turns.append({"role": role, "content": text})
            turns.extend({"role": "tool", "content": content_text(r.content)} for r in message.tool_responses)
        return turns

    def _render(self, turns: list[dict[str, str]], tools: list[ToolDefinition], **options: Any) -> str:
        schemas = [_tool_schema(tool) for tool in tools] or None
        return self.tokenizer.apply_chat_template(turns, tools=schemas, tokenize=False, **options)

    def prompt(self, messages: list[Message], tools: list[ToolDefinition], continue_final_message: bool = True) -> str:
        prefill = continue_final_message and bool(messages) and messages[-1].role is Role.assistant
        turns = self._turns(messages)
        if prefill:
            return self._render(turns, tools, continue_final_message=True)
        return self._render(turns, tools, add_generation_prompt=True)

    def training_pair(self, prompt: list[Message], answer: Message) -> tuple[str, str]:
        asked = self._render(self._turns(prompt), [], add_generation_prompt=True)
        whole = self._render(self._turns([*prompt, answer]), [])
        if not whole.startswith(asked):
            raise InvalidRequestError(
                "the model's chat template does not render a dialog as its prompt followed by the answer, "
                "so the answer cannot be trained on alone",
                "dataset",
            )
        return asked, whole[len(asked) :]

    def stop_tokens(self) -> list[str]:
        return []  # the model's EOS (its end of turn in its generation config) ends a turn

    def keeps_special_tokens(self) -> bool:
        return False

    def takes_tools(self) -> bool:
        return "tools" in self.tokenizer.chat_template  # Jinja reads `tools` only where it renders them


LLAMA3 = Llama3Format()


def _tool_schema(tool: ToolDefinition) -> dict[str, Any]:
    name = tool.tool_name.value if hasattr(tool.tool_name, "value") else str(tool.tool_name)
    parameters = tool.parameters or {}
    if parameters.get("type") != "object":  # Llama Stack's {"name": {"param_type", "description", "required"}}
        parameters = {
            "type": "object",
            "properties": {
                key: {"type": spec.get("param_type", "string"), "description": spec.get("description", "")}
                for key, spec in parameters.items()
                if isinstance(spec, dict)
            },
            "required": [key for key, spec in parameters.items() if isinstance(spec, dict) and spec.get("required")],
        }
    return {
        "type": "function",
        "function": {"name": name, "description": tool.description or "", "parameters": parameters},
    }


def prompt_format_for(model_path: str, setting: PromptFormatName = "auto") -> PromptFormat:
    """The format a model's prompts are written in; `auto` reads its tokenizer."""
    if setting == "llama3":
        return LLAMA3
    return _from_tokenizer(model_path, setting)


@lru_cache(maxsize=32)
def _from_tokenizer(model_path: str, setting: str) -> PromptFormat:
    if setting == "auto" and _has_llama3_tokens(model_path):
        return LLAMA3
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        if setting == "chat_template":
            raise
        logger.warning("no tokenizer readable at %s (%s): its prompts take the Llama 3.1 format", model_path, exc)
        return LLAMA3
    vocabulary = tokenizer.get_vocab()
    if setting == "auto" and all(token in vocabulary for token in LLAMA3_TOKENS):
        return LLAMA3
    return ChatTemplateFormat(tokenizer)


def _has_llama3_tokens(model_path: str) -> bool:
    """Whether the checkpoint's `tokenizer.json` holds Llama 3's turn tokens, read by the
    `tokenizers` library alone: importing transformers for `AutoTokenizer` took 6 of a training
    job's driver's 7 seconds before Ray Train started. False where it cannot tell (no
    `tokenizer.json`, a slow tokenizer): the caller then asks transformers."""
    path = Path(model_path) / "tokenizer.json"
    if not path.is_file():
        return False
    from tokenizers import Tokenizer

    try:
        vocabulary = Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)
    except Exception:  # a tokenizer.json these `tokenizers` cannot read: transformers decides
        return False
    return all(token in vocabulary for token in LLAMA3_TOKENS)
