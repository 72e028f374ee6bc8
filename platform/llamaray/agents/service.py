"""The Agentic System API: agents kept in the metadata store, turns run by `run_turn`.

Every finished turn is appended to the agent's record before the answer's last byte, so a
client that sends no `turn_history` continues where it left off, across restarts. A turn the
client abandoned (it disconnected mid-stream) is not kept: nobody saw its answer.
"""

from __future__ import annotations

import time
from typing import AsyncIterator

from llamaray.agents.shields import Shield, Shields
from llamaray.agents.tools import BUILTINS, BuiltinTools
from llamaray.agents.turn import Chunk, StepMetrics, TurnParts, TurnState, run_turn, turn_messages
from llamaray.api.agentic_system import (
    AgenticSystemCreateRequest,
    AgenticSystemCreateResponse,
    AgenticSystemExecuteRequest,
    AgenticSystemExecuteResponse,
    AgenticSystemInfo,
    AgenticSystemTurn,
)
from llamaray.api.common import BuiltinTool, Message, ShieldConfig, ToolDefinition
from llamaray.api.memory_banks import MemoryBanks
from llamaray.config import AgentSettings
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.inference.registry import ModelRegistry
from llamaray.security.ownership import Owners
from llamaray.store.metadata import MetadataStore

AGENT_KIND = "agent"
TURN_KIND = "agent_turn"  # the store's append-only lines: one JSON turn per line


def _tool_name(tool: ToolDefinition) -> str:
    """A built-in's name (the enum's value) or a custom tool's, as the model's calls name it."""
    return tool.tool_name.value if isinstance(tool.tool_name, BuiltinTool) else tool.tool_name


class AgenticSystemService:
    def __init__(
        self,
        registry: ModelRegistry,
        memory: MemoryBanks,
        store: MetadataStore,
        settings: AgentSettings,
        tools: BuiltinTools | None = None,
        metrics: StepMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.memory = memory
        self.store = store
        self.settings = settings
        self.tools = tools or BuiltinTools(settings)
        self.shields = Shields(registry, settings)
        self.owners = Owners(store)  # a key sees the agents it created (an admin key all)
        self.metrics = metrics

    async def create_agentic_system(self, request: AgenticSystemCreateRequest) -> AgenticSystemCreateResponse:
        model = await self.registry.chat(request.model, "model")
        if request.available_tools and not model.prompt_format.takes_tools():
            raise InvalidRequestError(
                f"{request.model}'s chat template takes no tools, so the agent's model would never see them",
                "available_tools",
            )
        names = [_tool_name(t) for t in request.available_tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidRequestError(f"available_tools names {duplicates} more than once", "available_tools")
        for tool in sorted(request.executable_tools):
            if tool not in BUILTINS:
                raise InvalidRequestError(
                    f"executable_tools: {tool!r} is not a built-in tool the platform can run "
                    f"({', '.join(sorted(BUILTINS))}); leave a custom tool out and the client runs it",
                    "executable_tools",
                )
            if tool not in names:
                raise InvalidRequestError(f"executable_tools: {tool!r} is not in available_tools", "executable_tools")
        banks = {b.uuid for b in await self.memory.get_memory_banks()}
        for bank_uuid in request.memory_bank_uuids:
            if bank_uuid not in banks:
                raise NotFoundError(f"memory bank {bank_uuid!r} does not exist", "memory_bank_uuids")
        await self._parts(request)  # every shield can run: its model is deployed, its library there
        self.store.create(
            AGENT_KIND, request.uuid, {"agent": request.model_dump(mode="json"), "created": int(time.time())}
        )
        self.owners.claim(AGENT_KIND, request.uuid)
        return AgenticSystemCreateResponse(agent_uuid=request.uuid)

    async def _build_shields(self, configs: list[ShieldConfig], param: str) -> list[Shield]:
        return [await self.shields.build(config, param) for config in configs]

    async def _parts(self, agent: AgenticSystemCreateRequest) -> TurnParts:
        tools = {_tool_name(t): t for t in agent.available_tools}
        model = await self.registry.chat(agent.model, "model")
        return TurnParts(
            agent=agent,
            engine=model.client,
            prompt_format=model.prompt_format,
            input_shields=await self._build_shields(agent.input_shields, "input_shields"),
            output_shields=await self._build_shields(agent.output_shields, "output_shields"),
            tool_input_shields={
                name: await self._build_shields(t.input_shields, "available_tools") for name, t in tools.items()
            },
            tool_output_shields={
                name: await self._build_shields(t.output_shields, "available_tools") for name, t in tools.items()
            },
            tools=self.tools,
            memory=self.memory,
            settings=self.settings,
            metrics=self.metrics,
        )

    def _agent(self, agent_id: str, param: str) -> dict:
        missing = NotFoundError(f"agent {agent_id!r} does not exist", param)
        self.owners.check(AGENT_KIND, agent_id, lambda: missing)
        try:
            return self.store.get(AGENT_KIND, agent_id)
        except NotFoundError:
            raise missing from None

    def _turns(self, agent_id: str) -> list[AgenticSystemTurn]:
        return [AgenticSystemTurn.model_validate_json(line) for line in self.store.read_lines(TURN_KIND, agent_id)]

    async def create_agentic_system_execute(
        self, request: AgenticSystemExecuteRequest
    ) -> AgenticSystemExecuteResponse | AsyncIterator[Chunk]:
        record = self._agent(request.agent_uuid, "agent_uuid")
        agent = AgenticSystemCreateRequest.model_validate(record["agent"])
        parts = await self._parts(agent)
        parts.stream = request.stream
        past = request.turn_history if request.turn_history is not None else self._turns(agent.uuid)
        history: list[Message] = [m for turn in past for m in turn_messages(turn)]
        state = TurnState(user_messages=request.messages)
        chunks = self._run_and_keep(parts, history, request.messages, state)
        if request.stream:
            return chunks
        async for _ in chunks:
            pass
        return AgenticSystemExecuteResponse(turn=state.turn())

    async def _run_and_keep(
        self, parts: TurnParts, history: list[Message], new: list[Message], state: TurnState
    ) -> AsyncIterator[Chunk]:
        async for chunk in run_turn(parts, history, new, state):
            yield chunk
        turn = state.turn()
        try:
            self._agent(parts.agent.uuid, "agent_uuid")  # deleted while the turn ran: keep nothing
        except NotFoundError:
            return
        self.store.append_lines(TURN_KIND, parts.agent.uuid, [turn.model_dump_json()])

    async def delete_agentic_system(self, agent_id: str) -> None:
        self._agent(agent_id, "agent_id")
        self.store.delete(AGENT_KIND, agent_id)
        self.store.delete_lines(TURN_KIND, agent_id)

    async def get_agentic_system(self, agent_id: str) -> AgenticSystemInfo:
        record = self._agent(agent_id, "agent_id")
        return AgenticSystemInfo(agent=record["agent"], created=record["created"], turns=self._turns(agent_id))

    async def list_agentic_systems(self) -> list[AgenticSystemCreateRequest]:
        agents = self.owners.only_visible(AGENT_KIND, self.store.list(AGENT_KIND), lambda pair: pair[0])
        return [AgenticSystemCreateRequest.model_validate(r["agent"]) for _, r in agents]
