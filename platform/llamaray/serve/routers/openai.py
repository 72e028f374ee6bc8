"""OpenAI-compatible routes under `/v1`, for the official client."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llamaray.api import openai as oai
from llamaray.serve.routers.deps import Services, services
from llamaray.serve.sse import sse_response

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models", response_model=oai.ModelList)
async def models(s: Services = Depends(services)):
    return await s.openai.models()


@router.get("/models/{model_id:path}", response_model=oai.ModelCard)
async def model(model_id: str, s: Services = Depends(services)):
    """An id with a `/` in it (`sentence-transformers/all-MiniLM-L6-v2`) is one id."""
    return await s.openai.model(model_id)


@router.post("/chat/completions", response_model=oai.ChatCompletion, response_model_exclude_none=True)
async def chat_completions(request: oai.ChatCompletionRequest, s: Services = Depends(services)):
    result = await s.openai.chat_completions(request)
    return await sse_response(result, done_marker=True) if request.stream else result


@router.post("/completions", response_model=oai.Completion, response_model_exclude_none=True)
async def completions(request: oai.CompletionRequest, s: Services = Depends(services)):
    result = await s.openai.completions(request)
    return await sse_response(result, done_marker=True) if request.stream else result


@router.post("/embeddings", response_model=oai.EmbeddingResponse)
async def embeddings(request: oai.EmbeddingRequest, s: Services = Depends(services)):
    return await s.embeddings.embeddings(request)
