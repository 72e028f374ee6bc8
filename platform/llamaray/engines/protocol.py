"""What an engine is to the rest of the platform: engine-neutral request and output types, and
the Protocols an engine implements.

The services speak `EngineRequest` / `EngineOutput` (plain dataclasses that pickle cheaply
across Ray), never vLLM's own types, so they stay testable and a vLLM upgrade touches only the
engines. A Serve deployment takes its engine class as a parameter and holds whatever satisfies
the Protocol; the gateway holds an `EngineClient` (a Serve handle, or an engine in-process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol

Conversation = list[dict[str, str]]  # chat-template turns [{"role": ..., "content": ...}]

# A text longer than this is tokenised in a thread: a 100k-character prefill takes tens of
# milliseconds, which on a replica's event loop would stall every stream it serves and its health
# check (the tokenizers release the GIL). Shorter ones cost less than the hop to a thread.
LONG_TEXT_CHARS = 16_384


@dataclass
class GenerationParams:
    max_tokens: int | None = None  # None: as many as the context leaves
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: int | None = None  # how many top alternatives; 0 means the sampled token only
    ignore_eos: bool = False
    min_tokens: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    skip_special_tokens: bool = True
    json_schema: dict[str, Any] | None = None  # structured output: JSON of this schema
    json_object: bool = False  # structured output: any JSON object


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter a request runs under, on its base model's engine. `int_id` is the same
    for the same adapter in every process (vLLM keys its adapter cache by it)."""

    name: str
    path: str
    int_id: int


@dataclass
class EngineRequest:
    request_id: str
    prompt: str
    params: GenerationParams
    add_special_tokens: bool = True  # False when the prompt already starts with BOS
    prompt_param: str = "prompt"  # the request field to name when the prompt is too long
    stop_tokens: list[str] = field(default_factory=list)  # special tokens to stop at, by text
    adapter: AdapterRef | None = None  # None: the base model


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class SequenceDelta:
    """New output of one sequence since the last delta (or all of it, when not streaming)."""

    index: int
    text: str
    num_tokens: int
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None  # "stop" | "length" | "abort"


@dataclass
class EngineOutput:
    prompt_tokens: int
    sequences: list[SequenceDelta]
    finished: bool


class Engine(Protocol):
    """A generating model in this process: a Serve replica's, or a batch actor's."""

    async def generate(self, request: EngineRequest) -> EngineOutput: ...

    def stats(self) -> dict[str, Any]: ...

    async def check_health(self) -> None: ...

    def shutdown(self) -> None: ...


class StreamingEngine(Engine, Protocol):
    """An engine that also answers as it goes: what `LLMServer` hosts."""

    def stream(self, request: EngineRequest, interval_s: float = 0.0) -> AsyncIterator[EngineOutput]: ...


class ScoringEngine(Protocol):
    """A pooling model in this process: a reward model's one score per conversation, or a
    classifier's probability per label for each text."""

    async def score(self, conversations: list[Conversation]) -> list[float]: ...

    async def classify(self, texts: list[str]) -> list[dict[str, float]]: ...

    def stats(self) -> dict[str, Any]: ...

    async def check_health(self) -> None: ...

    def shutdown(self) -> None: ...


class EngineClient(Protocol):
    """What a service needs of a generating model: a Serve handle in the gateway, an engine
    in-process in a benchmark."""

    async def generate(self, request: EngineRequest) -> EngineOutput: ...

    def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]: ...

    async def stats(self) -> dict[str, Any]: ...


class ScoringClient(Protocol):
    """What a service needs of a reward model or a classifier: the Serve client, or a
    `PoolingEngine` in a batch actor."""

    async def score(self, conversations: list[Conversation]) -> list[float]: ...

    async def classify(self, texts: list[str]) -> list[dict[str, float]]: ...
