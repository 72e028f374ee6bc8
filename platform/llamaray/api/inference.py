"""Inference API: request and response types of the draft, and the service Protocol."""

from __future__ import annotations

from typing import Any, AsyncIterator, Protocol, Union

from pydantic import Field
from typing_extensions import Annotated

from llamaray.api.common import (
    ApiModel,
    Content,
    Dialog,
    ModelId,
    SamplingParams,
    StopReason,
    ToolCall,
    ToolDefinition,
)
from llamaray.api.limits import INT32_MAX, at_most

# `max_tokens = 0` is the draft's default and means "as many as the context leaves".
MaxTokens = Field(default=0, ge=0, le=INT32_MAX)


class CompletionRequest(ApiModel):
    content: Content
    model: ModelId
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    max_tokens: int = MaxTokens
    stream: bool = False
    logprobs: bool = False


class CompletionResponse(ApiModel):
    content: Content
    stop_reason: StopReason | None = None
    # {"tokens": [str], "token_logprobs": [float]}: one entry per generated token.
    logprobs: dict[str, Any] | None = None


class CompletionResponseStreamChunk(ApiModel):
    text_delta: str
    stop_reason: StopReason | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionRequest(ApiModel):
    model: ModelId
    dialog: Dialog
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    available_tools: list[ToolDefinition] = Field(default_factory=list)
    max_tokens: int = MaxTokens
    stream: bool = False
    logprobs: bool = False


class ChatCompletionResponse(ApiModel):
    content: Content
    tool_calls: list[ToolCall] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionResponseStreamChunk(ApiModel):
    text_delta: str
    stop_reason: StopReason | None = None
    tool_call: ToolCall | None = None
    logprobs: dict[str, Any] | None = None


class BatchCompletionRequest(ApiModel):
    model: ModelId
    content_batch: Annotated[list[Content], at_most("max_prompts", "prompts")] = Field(min_length=1)
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    max_tokens: int = MaxTokens
    logprobs: bool = False


class BatchChatCompletionRequest(ApiModel):
    model: ModelId
    batch_dialogs: Annotated[list[Dialog], at_most("max_prompts", "dialogs")] = Field(min_length=1)
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    available_tools: list[ToolDefinition] = Field(default_factory=list)
    max_tokens: int = MaxTokens
    logprobs: bool = False


class Inference(Protocol):
    """The draft's Inference service. Streaming variants yield chunks instead of one response."""

    async def completion(
        self, request: CompletionRequest
    ) -> Union[CompletionResponse, AsyncIterator[CompletionResponseStreamChunk]]: ...

    async def chat_completion(
        self, request: ChatCompletionRequest
    ) -> Union[ChatCompletionResponse, AsyncIterator[ChatCompletionResponseStreamChunk]]: ...

    async def batch_completion(self, request: BatchCompletionRequest) -> list[CompletionResponse]: ...

    async def batch_chat_completion(self, request: BatchChatCompletionRequest) -> list[ChatCompletionResponse]: ...
