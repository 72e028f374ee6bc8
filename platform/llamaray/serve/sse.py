"""Server-Sent Events: one JSON object per `data:` line."""

from __future__ import annotations

import json
from typing import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from llamaray.errors import LlamarayError


def _encode(item: BaseModel | str) -> str:
    return item if isinstance(item, str) else item.model_dump_json()


async def sse_response(chunks: AsyncIterator[BaseModel | str], done_marker: bool = False) -> StreamingResponse:
    """Stream `chunks` as SSE.

    The first chunk is awaited before the response starts, so a request the engine refuses
    (too long a prompt, a bad field) is still answered with a 4xx status rather than a 200
    stream that carries an error. A failure after that ends the stream with an error event.
    """
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None

    async def body() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield f"data: {_encode(first)}\n\n"
            async for chunk in chunks:
                yield f"data: {_encode(chunk)}\n\n"
            if done_marker:
                yield "data: [DONE]\n\n"
        except LlamarayError as exc:
            error = {
                "error": {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.status_code}
            }
            yield f"data: {json.dumps(error)}\n\n"
        finally:
            await chunks.aclose()  # a client that left frees its engine slot here

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def respond(result):
    """A service's answer as HTTP: a stream becomes SSE, anything else is returned as is."""
    if hasattr(result, "__aiter__"):
        return await sse_response(result)
    return result
