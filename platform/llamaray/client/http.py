"""The client's one way to the platform: JSON in, JSON or SSE out, errors as the platform's own.

An error answer (OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`) comes back
as the `llamaray.errors` class of its status, so code that calls the platform over HTTP catches
what code inside it would: `NotFoundError`, `InvalidRequestError` (with `param`), ...
"""

from __future__ import annotations

import json
import os
from typing import Any, AsyncIterator

import httpx
from pydantic import BaseModel

from llamaray.errors import (
    ConflictError,
    DeadlineExceededError,
    EngineUnavailableError,
    InvalidRequestError,
    LlamarayError,
    NotFoundError,
    TooManyRequestsError,
)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "LLAMARAY_URL"
API_KEY_ENV = "LLAMARAY_API_KEY"

ERRORS: dict[int, type[LlamarayError]] = {
    400: InvalidRequestError,
    422: InvalidRequestError,
    404: NotFoundError,
    409: ConflictError,
    429: TooManyRequestsError,
    503: EngineUnavailableError,
    504: DeadlineExceededError,
}


class ApiError(LlamarayError):
    """An answer with a status no narrower class stands for (401, 403, 413, 500, ...)."""


def error_from(status: int, body: bytes) -> LlamarayError:
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") or body.decode(errors="replace")[:500] or f"HTTP {status}"
    exc = ERRORS.get(status, ApiError)(message, error.get("param"))
    exc.status_code = status  # 422 and 400 are one class; the status says which
    return exc


def as_json(value: Any) -> Any:
    """A request body or a list of them, as the routes read it (by alias: `schema`, not `schema_`)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return value


class Transport:
    """One `httpx.AsyncClient` for every API of a platform.

    `url` and `api_key` default to `LLAMARAY_URL` and `LLAMARAY_API_KEY` (the key is sent as
    `Authorization: Bearer`, as to vLLM and OpenAI). Reads wait up to `timeout_s`; a stream waits
    for each next event as long.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout_s)

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """The answer's JSON (or text, for the few routes that answer text); None when empty."""
        response = await self.http.request(method, path, params=_params(params), json=_body(body))
        if response.status_code >= 400:
            raise error_from(response.status_code, response.content)
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def content(self, method: str, path: str, *, params: dict[str, Any] | None = None) -> bytes:
        """The answer's bytes (an image)."""
        response = await self.http.request(method, path, params=_params(params))
        if response.status_code >= 400:
            raise error_from(response.status_code, response.content)
        return response.content

    async def events(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Each `data:` event of an SSE answer, parsed; `[DONE]` ends it, an error event raises."""
        request = self.http.build_request(
            method, path, params=_params(params), json=_body(body), headers={"Accept": "text/event-stream"}
        )
        response = await self.http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                raise error_from(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if isinstance(event, dict) and isinstance(event.get("error"), dict):
                    error = event["error"]
                    raise error_from(int(error.get("code") or 500), json.dumps(event).encode())
                yield event
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.http.aclose()


def _params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items() if v is not None}


def _body(body: Any) -> Any:
    return None if body is None else as_json(body)
