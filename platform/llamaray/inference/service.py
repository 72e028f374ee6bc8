"""The Llama Stack Inference API over the model registry's engines."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator, Protocol

from llamaray.api.common import Message, StopReason, ToolDefinition, content_text
from llamaray.api.data_jobs import BatchJobRequest
from llamaray.api.inference import (
    BatchChatCompletionRequest,
    BatchCompletionRequest,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionResponseStreamChunk,
    CompletionRequest,
    CompletionResponse,
    CompletionResponseStreamChunk,
)
from llamaray.engines.protocol import EngineRequest, GenerationParams, SequenceDelta
from llamaray.errors import InvalidRequestError
from llamaray.inference.chat_format import prefill_text
from llamaray.inference.prompt_format import LLAMA3, PromptFormat
from llamaray.inference.registry import ModelRegistry
from llamaray.inference.sampling import generation_params, logprobs_dict, stop_reason
from llamaray.inference.tool_parser import parse_tool_calls, strip_special_tokens
from llamaray.inference.tool_stream import ToolCallStream


def chat_stop_tokens(params: GenerationParams, prompt_format: PromptFormat = LLAMA3) -> list[str]:
    """A Llama chat turn stops at end of turn or of message, the chat's EOS (`ignore_eos`
    ignores them too), and keeps special tokens in its text: the python tag must survive to be
    parsed. Another model's turn ends at its own EOS."""
    params.skip_special_tokens = not prompt_format.keeps_special_tokens()
    return [] if params.ignore_eos else prompt_format.stop_tokens()


def chat_engine_request(
    messages: list[Message],
    tools: list[ToolDefinition],
    params: GenerationParams,
    prompt_param: str,
    continue_final_message: bool = True,
    prompt_format: PromptFormat = LLAMA3,
    tools_param: str | None = "available_tools",
) -> EngineRequest:
    """A chat turn as the engine sees it: the prompt in the model's format (`prompt_format`).
    Tools a model's prompt cannot carry are a 400 naming `tools_param` (None: the caller forces
    the call's shape itself), not a request the model answers without them."""
    if tools and tools_param and not prompt_format.takes_tools():
        raise InvalidRequestError("the model's chat template takes no tools, so it would never see them", tools_param)
    return EngineRequest(
        request_id=f"chat-{uuid.uuid4().hex}",
        prompt=prompt_format.prompt(messages, tools, continue_final_message),
        params=params,
        add_special_tokens=False,
        prompt_param=prompt_param,
        stop_tokens=chat_stop_tokens(params, prompt_format),
    )


def completion_response(seq: SequenceDelta) -> CompletionResponse:
    return CompletionResponse(
        content=seq.text, stop_reason=stop_reason(seq.finish_reason), logprobs=logprobs_dict(seq.logprobs)
    )


def chat_response(messages: list[Message], seq: SequenceDelta) -> ChatCompletionResponse:
    """The answer with its tool calls parsed; a prefilled answer starts with the prefill."""
    parsed = parse_tool_calls(prefill_text(messages) + seq.text)
    return ChatCompletionResponse(
        content=parsed.content,
        tool_calls=parsed.tool_calls,
        stop_reason=stop_reason(seq.finish_reason),
        logprobs=logprobs_dict(seq.logprobs),
    )


class BatchJobs(Protocol):
    """Runs a batch too large to answer inline as a job; its responses in the request's order."""

    async def run_batch(self, request: BatchJobRequest) -> list[dict[str, Any]]: ...


class InferenceService:
    """The four routes; a batch of more than `inline_max_prompts` runs as one job on `batch_jobs`
    (a Ray Data pipeline), smaller ones go to the engines at once, which batch them themselves."""

    def __init__(
        self, registry: ModelRegistry, batch_jobs: BatchJobs | None = None, inline_max_prompts: int = 0
    ) -> None:
        self.registry = registry
        self.batch_jobs = batch_jobs
        self.inline_max_prompts = inline_max_prompts

    def _inline(self, prompts: int) -> bool:
        return self.batch_jobs is None or prompts <= self.inline_max_prompts

    async def completion(
        self, request: CompletionRequest
    ) -> CompletionResponse | AsyncIterator[CompletionResponseStreamChunk]:
        engine = (await self.registry.chat(request.model)).client
        params = generation_params(request.sampling_params, request.max_tokens, request.logprobs)
        engine_request = EngineRequest(
            f"cmpl-{uuid.uuid4().hex}", content_text(request.content), params, prompt_param="content"
        )
        if request.stream:
            return self._stream_completion(engine, engine_request)
        out = await engine.generate(engine_request)
        return completion_response(out.sequences[0])

    async def _stream_completion(
        self, engine, engine_request: EngineRequest
    ) -> AsyncIterator[CompletionResponseStreamChunk]:
        async for out in engine.stream(engine_request):
            seq = out.sequences[0]
            yield CompletionResponseStreamChunk(
                text_delta=seq.text, stop_reason=stop_reason(seq.finish_reason), logprobs=logprobs_dict(seq.logprobs)
            )

    async def chat_completion(
        self, request: ChatCompletionRequest
    ) -> ChatCompletionResponse | AsyncIterator[ChatCompletionResponseStreamChunk]:
        model = await self.registry.chat(request.model)
        engine = model.client
        messages = request.dialog.messages()
        params = generation_params(request.sampling_params, request.max_tokens, request.logprobs)
        engine_request = chat_engine_request(
            messages, request.available_tools, params, "dialog", prompt_format=model.prompt_format
        )
        prefill = prefill_text(messages)
        if request.stream:
            return self._stream_chat(engine, engine_request, prefill)
        out = await engine.generate(engine_request)
        return chat_response(messages, out.sequences[0])

    async def _stream_chat(
        self, engine, engine_request: EngineRequest, prefill: str
    ) -> AsyncIterator[ChatCompletionResponseStreamChunk]:
        tool_stream = ToolCallStream()
        if prefill and (text := tool_stream.feed(prefill)):
            yield ChatCompletionResponseStreamChunk(text_delta=text, stop_reason=StopReason.not_stopped)
        reason = StopReason.not_stopped
        async for out in engine.stream(engine_request):
            seq = out.sequences[0]
            reason = stop_reason(seq.finish_reason)
            text = tool_stream.feed(seq.text)
            if text or seq.logprobs:
                yield ChatCompletionResponseStreamChunk(
                    text_delta=text, stop_reason=StopReason.not_stopped, logprobs=logprobs_dict(seq.logprobs)
                )
        rest, calls = tool_stream.finish()
        for call in calls:
            yield ChatCompletionResponseStreamChunk(text_delta="", tool_call=call, stop_reason=StopReason.not_stopped)
        yield ChatCompletionResponseStreamChunk(text_delta=strip_special_tokens(rest), stop_reason=reason)

    async def batch_completion(self, request: BatchCompletionRequest) -> list[CompletionResponse]:
        """Inline, every prompt at once: the engine's continuous batching runs them together."""
        if not self._inline(len(request.content_batch)):
            job = BatchJobRequest(**request.model_dump(exclude={"content_batch"}), content_batch=request.content_batch)
            return [CompletionResponse.model_validate(r) for r in await self.batch_jobs.run_batch(job)]
        singles = [
            CompletionRequest(
                content=content,
                model=request.model,
                sampling_params=request.sampling_params,
                max_tokens=request.max_tokens,
                logprobs=request.logprobs,
            )
            for content in request.content_batch
        ]
        return list(await asyncio.gather(*(self.completion(r) for r in singles)))

    async def batch_chat_completion(self, request: BatchChatCompletionRequest) -> list[ChatCompletionResponse]:
        if not self._inline(len(request.batch_dialogs)):
            job = BatchJobRequest(**request.model_dump(exclude={"batch_dialogs"}), batch_dialogs=request.batch_dialogs)
            return [ChatCompletionResponse.model_validate(r) for r in await self.batch_jobs.run_batch(job)]
        singles = [
            ChatCompletionRequest(
                model=request.model,
                dialog=dialog,
                sampling_params=request.sampling_params,
                available_tools=request.available_tools,
                max_tokens=request.max_tokens,
                logprobs=request.logprobs,
            )
            for dialog in request.batch_dialogs
        ]
        return list(await asyncio.gather(*(self.chat_completion(r) for r in singles)))
