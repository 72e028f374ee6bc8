"""OpenAI-compatible protocol types (`/v1`), the subset the official client uses.

Unknown fields are ignored rather than refused, as vLLM's server does, because the client
sends fields (`stream_options`, `parallel_tool_calls`, ...) that older servers never knew.
vLLM's extensions `top_k`, `ignore_eos`, `min_tokens`, `continue_final_message` and `echo` are
accepted so the same benchmark and client code work against both servers.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Literal, Optional, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Annotated

from llamaray.api.limits import INT32_MAX, Seed, at_most, check_count


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionCall(OpenAIModel):
    name: str
    arguments: str  # a JSON string, as the OpenAI API sends it


class ToolCallOut(OpenAIModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(OpenAIModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(OpenAIModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ContentPart(OpenAIModel):
    type: str = "text"  # only text is read; any other part (image_url, input_audio, file) is a 400
    text: str | None = None


class JsonSchemaFormat(OpenAIModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None  # the schema is always enforced (vLLM's structured outputs)


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: str | None = None
    tool_calls: list[ToolCallOut] | None = None
    tool_call_id: str | None = None


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class SamplingFields(OpenAIModel):
    model: str
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=16)
    stop: Union[str, Annotated[list[str], at_most("max_stop", "stop strings")], None] = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: Seed | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    user: str | None = None
    # vLLM's extensions
    top_k: int = Field(default=0, ge=-1, le=INT32_MAX)
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0, le=INT32_MAX)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], at_most("max_messages", "messages")] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[ToolSpec] | None = None
    tool_choice: Union[Literal["none", "auto", "required"], dict[str, Any], None] = None
    response_format: ResponseFormat | None = None
    continue_final_message: bool = False
    echo: bool = False


class CompletionRequest(SamplingFields):
    prompt: Union[str, Annotated[list[str], at_most("max_prompts", "prompts")]]
    max_tokens: int | None = Field(default=16, ge=1, le=INT32_MAX)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False

    @model_validator(mode="after")
    def _completions_within_limits(self) -> "CompletionRequest":
        prompts = 1 if isinstance(self.prompt, str) else len(self.prompt)
        check_count(prompts * self.n, "max_prompts", "completions (prompts x n)")
        return self


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCallOut] = Field(default_factory=list)


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage


class DeltaToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCall | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


ModelKind = Literal["chat", "reward", "classifier", "embedding"]


class ModelCard(BaseModel):
    """OpenAI's model object, with vLLM's `root`, `parent` and `max_model_len`, and `kind`: which
    routes take the id (chat and completion routes, `/reward_scoring/score`, a `prompt_guard`
    shield, `/v1/embeddings`)."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "llamaray"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None
    kind: ModelKind = "chat"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingRequest(OpenAIModel):
    model: str
    # Text, or token ids of the embedding model's own tokenizer (one list, or one per input), as
    # vLLM takes them; LangChain's OpenAIEmbeddings sends ids unless check_embedding_ctx_length=False.
    input: Union[
        str,
        Annotated[list[str], at_most("max_prompts", "inputs")],
        Annotated[list[int], Field(min_length=1)],
        Annotated[list[Annotated[list[int], Field(min_length=1)]], at_most("max_prompts", "inputs")],
    ]
    encoding_format: Literal["float", "base64"] = "float"  # the official client asks for base64
    dimensions: Optional[int] = None
    user: Optional[str] = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]  # base64 of little-endian float32 when asked


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class OpenAICompatible(Protocol):
    """The `/v1` completion routes. A stream is an iterator of chunks already encoded as JSON,
    which the route sends as Server-Sent Events."""

    async def models(self) -> ModelList: ...

    async def model(self, model_id: str) -> ModelCard: ...

    async def chat_completions(self, request: ChatCompletionRequest) -> ChatCompletion | AsyncIterator[str]: ...

    async def completions(self, request: CompletionRequest) -> Completion | AsyncIterator[str]: ...


class Embeddings(Protocol):
    """`/v1/embeddings`, answered by the memory banks' embedding model."""

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse: ...
