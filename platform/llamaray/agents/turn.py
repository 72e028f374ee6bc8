"""One turn of an agent, as steps: input shields, memory retrieval, model inference and tool
execution (looping while the model calls tools the platform runs), output shields.

`run_turn` is an async generator of the draft's stream chunks (`step_start`, `step_progress`,
`step_end`); the turn it built is on the `TurnState` when the generator is exhausted. A client
that leaves closes the generator, which closes the engine stream and kills a running sandbox.
"""

from __future__ import annotations

import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

from llamaray.agents.shields import Shield
from llamaray.agents.tools import BuiltinTools
from llamaray.api.agentic_system import (
    AgenticSystemCreateRequest,
    AgenticSystemExecuteResponseEventType,
    AgenticSystemExecuteResponseStreamChunk,
    AgenticSystemTurn,
    ExecutionStep,
    ExecutionStepType,
    MemoryRetrievalStep,
    ModelInferenceStep,
    SafetyFilteringStep,
    ToolExecutionStep,
)
from llamaray.api.common import Message, Role, SafetyViolation, StopReason, ToolCall, ToolResponse, content_text
from llamaray.api.memory_banks import MemoryBankDocument, MemoryBanks, QueryMemoryBankRequest
from llamaray.config import AgentSettings
from llamaray.engines.protocol import EngineClient, GenerationParams
from llamaray.inference.prompt_format import LLAMA3, PromptFormat
from llamaray.inference.sampling import stop_reason
from llamaray.inference.service import chat_engine_request
from llamaray.inference.tool_stream import ToolCallStream

Chunk = AgenticSystemExecuteResponseStreamChunk
Event = AgenticSystemExecuteResponseEventType

CONTEXT_HEADER = "Here are the retrieved documents for relevant context:"


@dataclass
class TurnParts:
    """What a turn runs with, resolved by the service: the engine, shields and tools."""

    agent: AgenticSystemCreateRequest
    engine: EngineClient
    input_shields: list[Shield]
    output_shields: list[Shield]
    tool_input_shields: dict[str, list[Shield]]
    tool_output_shields: dict[str, list[Shield]]
    tools: BuiltinTools
    memory: MemoryBanks
    settings: AgentSettings
    stream: bool = True  # False: the model's answers are generated whole, not streamed
    metrics: StepMetrics | None = None
    # The agent model's prompts: the Llama 3.1 format (tools, `ipython`), or its tokenizer's own
    # chat template (tools handed to it; calls parsed from `<tool_call>` blocks or bare JSON).
    prompt_format: PromptFormat = LLAMA3


class StepMetrics(Protocol):
    """Where each step's duration goes (`serve.metrics.GatewayMetrics`, to Prometheus)."""

    def agent_step(self, step_type: str, seconds: float, violation: str | None) -> None: ...


def _observe(
    parts: TurnParts, kind: ExecutionStepType, started: float, violation: SafetyViolation | None = None
) -> None:
    if parts.metrics is not None:
        seconds = time.perf_counter() - started
        parts.metrics.agent_step(kind.value, seconds, violation.violation_type if violation else None)


@dataclass
class TurnState:
    user_messages: list[Message]
    steps: list[ExecutionStep] = field(default_factory=list)
    response: Message | None = None

    def turn(self) -> AgenticSystemTurn:
        return AgenticSystemTurn(user_messages=self.user_messages, steps=self.steps, response_message=self.response)


def as_model_messages(messages: list[Message]) -> list[Message]:
    """A client's tool results (a message carrying `tool_responses`) as the `tool` messages the
    prompt holds, one per response."""
    out: list[Message] = []
    for message in messages:
        if message.tool_responses and not message.tool_calls:
            if content_text(message.content).strip():
                out.append(message.model_copy(update={"tool_responses": []}))
            out.extend(Message(role=Role.tool, content=r.content) for r in message.tool_responses)
        else:
            out.append(message)
    return out


def turn_messages(turn: AgenticSystemTurn) -> list[Message]:
    """A past turn as the messages the model saw: its user messages, each tool call with its
    results, then its answer."""
    messages = as_model_messages(turn.user_messages)
    for step in turn.steps:
        if isinstance(step, ToolExecutionStep):
            messages.append(Message(role=Role.assistant, content="", tool_calls=step.tool_calls))
            messages.extend(Message(role=Role.tool, content=r.content) for r in step.tool_responses)
    messages.append(turn.response_message)
    return messages


def _chunk(event: Event, step_uuid: str, step_type: ExecutionStepType, **payload) -> Chunk:
    return Chunk(event_type=event, step_uuid=step_uuid, step_type=step_type, **payload)


async def _shield_step(
    state: TurnState, parts: TurnParts, shields: list[Shield], messages: list[Message]
) -> AsyncIterator[Chunk]:
    """One safety_filtering step over `shields` in order. The first violation ends it and the
    turn: the shield's suggested response becomes the turn's answer (`state.response`)."""
    step_uuid = str(uuid.uuid4())
    kind = ExecutionStepType.safety_filtering
    yield _chunk(Event.step_start, step_uuid, kind)
    violation = None
    started = time.perf_counter()
    for shield in shields:
        violation = await shield.check(messages)
        if violation is not None:
            break
    _observe(parts, kind, started, violation)
    if violation is not None:
        yield _chunk(Event.step_progress, step_uuid, kind, violation=violation)
    state.steps.append(SafetyFilteringStep(uuid=step_uuid, violation=violation))
    yield _chunk(Event.step_end, step_uuid, kind, violation=violation)
    if violation is not None:
        state.response = _blocked(violation)


async def _retrieve(state: TurnState, parts: TurnParts, query: str) -> AsyncIterator[Chunk | str]:
    """The memory_retrieval step; yields, last, the context text to add to the prompt."""
    step_uuid = str(uuid.uuid4())
    kind = ExecutionStepType.memory_retrieval
    yield _chunk(Event.step_start, step_uuid, kind)
    started = time.perf_counter()
    top_k = parts.settings.memory_top_k
    found = []
    for bank_uuid in parts.agent.memory_bank_uuids:
        answer = await parts.memory.query_memory_bank(
            QueryMemoryBankRequest(bank_uuid=bank_uuid, query=query, top_k=top_k)
        )
        found.extend((bank_uuid, chunk) for chunk in answer.chunks)
    found.sort(key=lambda pair: pair[1].score, reverse=True)
    documents, scores = [], []
    for bank_uuid, chunk in found[:top_k]:
        document = MemoryBankDocument(
            uuid=chunk.document_uuid,
            content=chunk.text.encode(),
            metadata={**chunk.metadata, "bank_uuid": bank_uuid, "chunk_index": chunk.chunk_index},
            mime_type="text/plain",
        )
        documents.append(document)
        scores.append(chunk.score)
        yield _chunk(Event.step_progress, step_uuid, kind, retrieved_document=document)
    state.steps.append(MemoryRetrievalStep(uuid=step_uuid, documents=documents, scores=scores))
    _observe(parts, kind, started)
    yield _chunk(Event.step_end, step_uuid, kind)
    if documents:
        yield retrieved_context(documents)


def retrieved_context(documents: list[MemoryBankDocument]) -> str:
    """What retrieval adds to the last user message: each chunk under its document id."""
    blocks = [f"[document {d.uuid}]\n{d.content.decode()}" for d in documents]
    return "\n\n" + CONTEXT_HEADER + "\n" + "\n\n".join(blocks)


async def _infer(state: TurnState, parts: TurnParts, messages: list[Message]) -> AsyncIterator[Chunk | Message]:
    """One model_inference step, streamed; yields, last, the assistant message it produced."""
    step_uuid = str(uuid.uuid4())
    kind = ExecutionStepType.model_inference
    yield _chunk(Event.step_start, step_uuid, kind)
    params = GenerationParams(max_tokens=parts.settings.max_tokens)
    request = chat_engine_request(
        messages, parts.agent.available_tools, params, "messages", prompt_format=parts.prompt_format
    )
    tool_stream = ToolCallStream()
    shown, reason = [], StopReason.not_stopped
    started = time.perf_counter()
    if not parts.stream:  # one engine call and one answer: no per-token hops through Serve
        seq = (await parts.engine.generate(request)).sequences[0]
        reason = stop_reason(seq.finish_reason)
        if text := tool_stream.feed(seq.text):
            shown.append(text)
    else:
        async with aclosing(parts.engine.stream(request)) as outputs:
            async for out in outputs:
                seq = out.sequences[0]
                reason = stop_reason(seq.finish_reason)
                if text := tool_stream.feed(seq.text):
                    shown.append(text)
                    yield _chunk(Event.step_progress, step_uuid, kind, response_text_delta=text)
    _observe(parts, kind, started)
    rest, calls = tool_stream.finish()
    if rest:
        shown.append(rest)
        yield _chunk(Event.step_progress, step_uuid, kind, response_text_delta=rest)
    for call in calls:
        yield _chunk(Event.step_progress, step_uuid, kind, tool_call=call)
    text = "".join(shown)
    state.steps.append(ModelInferenceStep(uuid=step_uuid, text=text))
    yield _chunk(Event.step_end, step_uuid, kind, stop_reason=reason)
    yield Message(role=Role.assistant, content=text, tool_calls=calls)


async def _execute(state: TurnState, parts: TurnParts, call: ToolCall) -> AsyncIterator[Chunk | ToolResponse]:
    step_uuid = str(uuid.uuid4())
    kind = ExecutionStepType.tool_execution
    yield _chunk(Event.step_start, step_uuid, kind)
    yield _chunk(Event.step_progress, step_uuid, kind, tool_call=call)
    started = time.perf_counter()
    response = await parts.tools.run(call)
    _observe(parts, kind, started)
    yield _chunk(Event.step_progress, step_uuid, kind, tool_response_delta=response)
    state.steps.append(ToolExecutionStep(uuid=step_uuid, tool_calls=[call], tool_responses=[response]))
    yield _chunk(Event.step_end, step_uuid, kind)
    yield response


def _blocked(violation: SafetyViolation) -> Message:
    return Message(role=Role.assistant, content=violation.suggested_user_response or "I can't help with that.")


async def run_turn(
    parts: TurnParts, history: list[Message], new: list[Message], state: TurnState
) -> AsyncIterator[Chunk]:
    agent = parts.agent
    turn_input = as_model_messages(new)
    if parts.input_shields:
        async for chunk in _shield_step(state, parts, parts.input_shields, turn_input):
            yield chunk
        if state.response is not None:
            return

    prompt_input = list(turn_input)
    query = "\n".join(content_text(m.content) for m in turn_input if m.role is Role.user)
    if agent.memory_bank_uuids and query.strip():
        async for item in _retrieve(state, parts, query):
            if isinstance(item, str):  # the context, added to the last user message the model reads
                last = max(i for i, m in enumerate(prompt_input) if m.role is Role.user)
                message = prompt_input[last]
                prompt_input[last] = message.model_copy(update={"content": content_text(message.content) + item})
            else:
                yield item

    system = [Message(role=Role.system, content=agent.instructions)] if agent.instructions else []
    messages = [*system, *history, *prompt_input]
    answer: Message | None = None
    for _ in range(parts.settings.max_inference_steps):
        async for item in _infer(state, parts, messages):
            if isinstance(item, Message):
                answer = item
            else:
                yield item
        if not answer.tool_calls or answer.tool_calls[0].tool_name not in agent.executable_tools:
            break  # an answer, or a call for the client to run (it answers in its next execute)
        call = answer.tool_calls[0]
        answer = answer.model_copy(update={"tool_calls": [call]})  # one call at a time (Llama 3.1)
        if shields := parts.tool_input_shields.get(call.tool_name):
            async for chunk in _shield_step(state, parts, shields, [answer]):
                yield chunk
            if state.response is not None:
                return
        response = None
        async for item in _execute(state, parts, call):
            if isinstance(item, ToolResponse):
                response = item
            else:
                yield item
        result = Message(role=Role.tool, content=response.content)
        if shields := parts.tool_output_shields.get(call.tool_name):
            async for chunk in _shield_step(
                state, parts, shields, [Message(role=Role.assistant, content=response.content)]
            ):
                yield chunk
            if state.response is not None:
                return
        messages += [answer, result]
    else:  # every model call asked for a tool: the turn ends without an answer
        steps = parts.settings.max_inference_steps
        answer = Message(
            role=Role.assistant, content=f"(The turn stopped after {steps} model calls without an answer.)"
        )
    state.response = answer

    if parts.output_shields and not answer.tool_calls:  # a violation replaces state.response
        async for chunk in _shield_step(state, parts, parts.output_shields, [*turn_input, answer]):
            yield chunk
