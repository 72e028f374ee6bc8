"""Llama Stack Inference routes (API.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llamaray.api.inference import (
    BatchChatCompletionRequest,
    BatchCompletionRequest,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
)
from llamaray.serve.routers.deps import Services, services
from llamaray.serve.sse import respond

router = APIRouter(prefix="/inference", tags=["inference"])
SSE = {200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks when `stream` is true"}}


@router.post("/completion", response_model=CompletionResponse, responses=SSE)
async def completion(request: CompletionRequest, s: Services = Depends(services)):
    return await respond(await s.inference.completion(request))


@router.post("/chat_completion", response_model=ChatCompletionResponse, responses=SSE)
async def chat_completion(request: ChatCompletionRequest, s: Services = Depends(services)):
    return await respond(await s.inference.chat_completion(request))


@router.post("/batch_completion", response_model=list[CompletionResponse])
async def batch_completion(request: BatchCompletionRequest, s: Services = Depends(services)):
    return await s.inference.batch_completion(request)


@router.post("/batch_chat_completion", response_model=list[ChatCompletionResponse])
async def batch_chat_completion(request: BatchChatCompletionRequest, s: Services = Depends(services)):
    return await s.inference.batch_chat_completion(request)
