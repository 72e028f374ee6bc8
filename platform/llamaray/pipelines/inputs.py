"""What a data job needs before its pipeline starts: its models, sampling and rows.

`check_*` find everything that can be wrong with a request without reading its rows, so the
gateway answers a 4xx before any job exists; the driver then calls `*_inputs` for the rows.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaray.api.common import Message, Role, content_text
from llamaray.api.data_jobs import BatchJobRequest
from llamaray.api.datasets import Dataset, DatasetColumnType
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest
from llamaray.config import ModelConfig, PlatformConfig
from llamaray.datasets.readers import read_rows
from llamaray.datasets.registry import registered
from llamaray.engines.protocol import AdapterRef, GenerationParams
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.inference.adapters import AdapterCatalog, adapter_ref
from llamaray.inference.prompt_format import PromptFormat, prompt_format_for
from llamaray.inference.sampling import generation_params
from llamaray.inference.service import chat_stop_tokens
from llamaray.pipelines.sdg import sdg_params
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage

PROMPT_TYPES = (DatasetColumnType.text, DatasetColumnType.dialog)


def find_model(platform: PlatformConfig, model_id: str | None, kind: str, param: str) -> ModelConfig:
    """The model registered under `model_id`, or the config's first model of `kind` when None."""
    models = [m for m in platform.models if m.kind == kind]
    for model in models:
        if model_id is None or model_id in model.ids:
            return model
    served = sorted(i for m in models for i in m.ids)
    raise NotFoundError(f"model {model_id!r} is not served here; {kind} models: {served}", param)


async def find_generator(
    platform: PlatformConfig, model_id: str | None, adapters: AdapterCatalog | None
) -> tuple[ModelConfig, AdapterRef | None]:
    """The chat model that generates, and the adapter it runs under when `model_id` names one."""
    try:
        return find_model(platform, model_id, "chat", "model"), None
    except NotFoundError:
        found = await adapters.find(model_id) if adapters is not None and model_id else None
        if found is None:
            raise
        return found[0], adapter_ref(found[1])


@dataclass
class GenerationInputs:
    model: ModelConfig
    params: GenerationParams
    stop_tokens: list[str]
    chat: bool  # rows carry `messages` and answers are chat completions
    adapter: AdapterRef | None = None
    prompt_format: PromptFormat | None = None  # the model's (an adapter's is its base's); chat rows only


async def check_sdg(
    request: SyntheticDataGenerationRequest,
    platform: PlatformConfig,
    store: MetadataStore,
    adapters: AdapterCatalog | None = None,
) -> tuple[GenerationInputs, ModelConfig]:
    generator, adapter = await find_generator(platform, request.model, adapters)
    reward = find_model(platform, request.reward_scoring, "reward", "reward_scoring")
    params = sdg_params(request, reward)
    if request.dataset_id:
        _prompt_column(store, request.dataset_id, request.prompt_column, "prompt_column")
    prompts = await _prompt_format(generator)
    return GenerationInputs(generator, params, chat_stop_tokens(params, prompts), True, adapter, prompts), reward


async def check_batch(
    request: BatchJobRequest, platform: PlatformConfig, store: MetadataStore, adapters: AdapterCatalog | None = None
) -> GenerationInputs:
    model, adapter = await find_generator(platform, request.model, adapters)
    params = generation_params(request.sampling_params, request.max_tokens, request.logprobs)
    chat = request.batch_dialogs is not None
    if request.dataset_id:
        chat = _prompt_column(store, request.dataset_id, request.column, "column") is DatasetColumnType.dialog
    if not chat:
        return GenerationInputs(model, params, [], chat, adapter)
    prompts = await _prompt_format(model)
    if request.available_tools and not prompts.takes_tools():
        raise InvalidRequestError(f"{model.model_id}'s chat template takes no tools", "available_tools")
    return GenerationInputs(model, params, chat_stop_tokens(params, prompts), chat, adapter, prompts)


async def _prompt_format(model: ModelConfig) -> PromptFormat:
    """As the model's replicas write its prompts (its tokenizer read once, off the event loop)."""
    return await asyncio.to_thread(prompt_format_for, model.path, model.prompt_format)


def sdg_rows(
    request: SyntheticDataGenerationRequest, platform: PlatformConfig, store: MetadataStore, prompts: PromptFormat
) -> list[dict[str, Any]]:
    if request.prompts:
        dialogs = [[p] for p in request.prompts]
    else:
        column_type, values = _dataset_column(
            request.dataset_id, request.prompt_column, "prompt_column", platform, store
        )
        dialogs = [_dialog(value, column_type) for value in values]
    return [_chat_row(i, messages, [], prompts) for i, messages in enumerate(dialogs)]


def batch_rows(
    request: BatchJobRequest, platform: PlatformConfig, store: MetadataStore, prompts: PromptFormat | None
) -> list[dict[str, Any]]:
    """Each prompt as the engine takes it; dialogs in `prompts`, the model's format (`check_batch`)."""
    tools = request.available_tools
    if request.content_batch is not None:
        return [_completion_row(i, content_text(c)) for i, c in enumerate(request.content_batch)]
    if request.batch_dialogs is not None:
        return [_chat_row(i, d.messages(), tools, prompts) for i, d in enumerate(request.batch_dialogs)]
    column_type, values = _dataset_column(request.dataset_id, request.column, "column", platform, store)
    if column_type is DatasetColumnType.dialog:
        return [_chat_row(i, _dialog(value, column_type), tools, prompts) for i, value in enumerate(values)]
    return [_completion_row(i, str(value)) for i, value in enumerate(values)]


def _completion_row(index: int, text: str) -> dict[str, Any]:
    return {"index": index, "prompt": text, "add_special_tokens": True, "messages": ""}


def _chat_row(index: int, messages: list[Message], tools, prompts: PromptFormat) -> dict[str, Any]:
    return {
        "index": index,
        "prompt": prompts.prompt(messages, tools),
        "add_special_tokens": False,
        "messages": json.dumps([m.model_dump(mode="json", exclude_defaults=True) for m in messages]),
    }


def _prompt_column(store: MetadataStore, dataset_id: str, column: str, param: str) -> DatasetColumnType:
    return _checked_column(registered(store, dataset_id), dataset_id, column, param)


def _checked_column(dataset: Dataset, dataset_id: str, column: str, param: str) -> DatasetColumnType:
    column_type = dataset.columns.get(column)
    if column_type not in PROMPT_TYPES:
        found = f"it is {column_type.value!r}" if column_type else f"its columns are {sorted(dataset.columns)}"
        raise InvalidRequestError(f"dataset {dataset_id!r} has no text or dialog column {column!r}: {found}", param)
    return column_type


def _dataset_column(
    dataset_id: str, column: str, param: str, platform: PlatformConfig, store: MetadataStore
) -> tuple[DatasetColumnType, list[Any]]:
    """A prompt column's type and its value in every row."""
    dataset = registered(store, dataset_id)
    column_type = _checked_column(dataset, dataset_id, column, param)
    roots = [Path(root) for root in platform.dataset_roots]
    storage = SharedStorage.of_platform(platform)
    rows = read_rows(dataset.content_url, roots, "dataset_id", platform.outbound, storage)
    return column_type, [row[column] for row in rows]


def _dialog(value: Any, column_type: DatasetColumnType) -> list[Message]:
    """A text value is one user message; a dialog value is its messages."""
    if column_type is DatasetColumnType.text:
        return [Message(role=Role.user, content=str(value))]
    return [Message.model_validate(m) for m in value]
