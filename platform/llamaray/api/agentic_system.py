"""Agentic system API: agents that plan, call tools, retrieve from memory and apply shields."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, AsyncIterator, Literal, Protocol, Union

from pydantic import Field

from llamaray.api.common import (
    ApiModel,
    Message,
    ModelId,
    SafetyViolation,
    ShieldConfig,
    StopReason,
    ToolCall,
    ToolDefinition,
    ToolResponse,
)
from llamaray.api.limits import at_most
from llamaray.api.memory_banks import MemoryBankDocument


class ExecutionStepType(str, Enum):
    model_inference = "model_inference"
    tool_execution = "tool_execution"
    safety_filtering = "safety_filtering"
    memory_retrieval = "memory_retrieval"


class ModelInferenceStep(ApiModel):
    step_type: Literal["model_inference"] = "model_inference"
    uuid: str
    text: str
    logprobs: dict | None = None


class ToolExecutionStep(ApiModel):
    step_type: Literal["tool_execution"] = "tool_execution"
    uuid: str
    tool_calls: list[ToolCall]
    tool_responses: list[ToolResponse]


class SafetyFilteringStep(ApiModel):
    step_type: Literal["safety_filtering"] = "safety_filtering"
    uuid: str
    violation: SafetyViolation | None = None


class MemoryRetrievalStep(ApiModel):
    step_type: Literal["memory_retrieval"] = "memory_retrieval"
    uuid: str
    documents: list[MemoryBankDocument]
    scores: list[float]


ExecutionStep = Annotated[
    Union[ModelInferenceStep, ToolExecutionStep, SafetyFilteringStep, MemoryRetrievalStep],
    Field(discriminator="step_type"),
]


class AgenticSystemTurn(ApiModel):
    user_messages: list[Message]
    steps: list[ExecutionStep]
    response_message: Message


class AgenticSystemCreateRequest(ApiModel):
    uuid: str = Field(min_length=1, max_length=256)
    instructions: str
    model: ModelId
    available_tools: list[ToolDefinition] = Field(default_factory=list)
    executable_tools: set[str] = Field(default_factory=set)
    memory_bank_uuids: list[str] = Field(default_factory=list)
    input_shields: list[ShieldConfig] = Field(default_factory=list)
    output_shields: list[ShieldConfig] = Field(default_factory=list)


class AgenticSystemCreateResponse(ApiModel):
    agent_uuid: str


class AgenticSystemExecuteRequest(ApiModel):
    agent_uuid: str
    messages: Annotated[list[Message], at_most("max_messages", "messages")] = Field(min_length=1)
    # The server keeps each agent's turns too, so a client that sends none continues (API.md).
    turn_history: list[AgenticSystemTurn] | None = None
    stream: bool = False


class AgenticSystemExecuteResponse(ApiModel):
    turn: AgenticSystemTurn


class AgenticSystemExecuteResponseEventType(str, Enum):
    step_start = "step_start"
    step_end = "step_end"
    step_progress = "step_progress"


class AgenticSystemExecuteResponseStreamChunk(ApiModel):
    event_type: AgenticSystemExecuteResponseEventType
    step_uuid: str
    step_type: ExecutionStepType
    violation: SafetyViolation | None = None
    tool_call: ToolCall | None = None
    tool_response_delta: ToolResponse | None = None
    response_text_delta: str | None = None
    retrieved_document: MemoryBankDocument | None = None
    stop_reason: StopReason | None = None


class AgenticSystemInfo(ApiModel):
    """An agent as created, with every turn it has run (not in the draft, which has no way to
    read an agent back: `GET /agentic_system/get`)."""

    agent: AgenticSystemCreateRequest
    created: int  # seconds since the epoch
    turns: list[AgenticSystemTurn]


class AgenticSystem(Protocol):
    async def create_agentic_system(self, request: AgenticSystemCreateRequest) -> AgenticSystemCreateResponse: ...

    async def create_agentic_system_execute(
        self, request: AgenticSystemExecuteRequest
    ) -> Union[AgenticSystemExecuteResponse, AsyncIterator[AgenticSystemExecuteResponseStreamChunk]]: ...

    async def delete_agentic_system(self, agent_id: str) -> None: ...

    async def get_agentic_system(self, agent_id: str) -> AgenticSystemInfo: ...

    async def list_agentic_systems(self) -> list[AgenticSystemCreateRequest]: ...
