"""Agentic System routes (API.md); `get` and `list` are additions, since the draft cannot read
an agent back."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llamaray.api.agentic_system import (
    AgenticSystemCreateRequest,
    AgenticSystemCreateResponse,
    AgenticSystemExecuteRequest,
    AgenticSystemExecuteResponse,
    AgenticSystemInfo,
)
from llamaray.serve.routers.deps import Services, services
from llamaray.serve.sse import respond

router = APIRouter(prefix="/agentic_system", tags=["agentic_system"])
SSE = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "JSON, or SSE of AgenticSystemExecuteResponseStreamChunk when `stream` is true",
    }
}


@router.post("/create", response_model=AgenticSystemCreateResponse)
async def create(request: AgenticSystemCreateRequest, s: Services = Depends(services)):
    return await s.agents.create_agentic_system(request)


@router.post("/execute", response_model=AgenticSystemExecuteResponse, responses=SSE)
async def execute(request: AgenticSystemExecuteRequest, s: Services = Depends(services)):
    return await respond(await s.agents.create_agentic_system_execute(request))


@router.delete("/delete", response_model=None)
async def delete(agent_id: str, s: Services = Depends(services)) -> None:
    await s.agents.delete_agentic_system(agent_id)


@router.get("/get", response_model=AgenticSystemInfo)
async def get(agent_id: str, s: Services = Depends(services)):
    return await s.agents.get_agentic_system(agent_id)


@router.get("/list", response_model=list[AgenticSystemCreateRequest])
async def list_agents(s: Services = Depends(services)):
    return await s.agents.list_agentic_systems()
