"""How errors become HTTP answers: one JSON shape (OpenAI's) for every route."""

from __future__ import annotations

import logging
import re
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llamaray.errors import LlamarayError

logger = logging.getLogger(__name__)


def error_body(message: str, error_type: str, param: str | None, code: int) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _cause(exc: BaseException) -> BaseException:
    """The exception a replica raised, out of the `RayTaskError` that carried it."""
    return getattr(exc, "cause", None) or exc


# The names pydantic puts in an error's location for the member of a union it tried
# (`stop.str`, `stop.function-after[check(), list[str]]`): not fields, so not named.
UNION_MEMBER = re.compile(r"^(str|int|float|bool|bytes|list|dict|none|[\w-]+\[.*\])$")


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path") and not UNION_MEMBER.match(str(p))]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LlamarayError)
    async def llamaray_error(request: Request, exc: LlamarayError) -> JSONResponse:
        cause = _cause(exc)
        if not isinstance(cause, LlamarayError):
            cause = exc
        retry_after = getattr(cause, "retry_after_s", None)
        return JSONResponse(
            error_body(cause.message, cause.error_type, cause.param, cause.status_code),
            cause.status_code,
            headers={"Retry-After": str(retry_after)} if retry_after else None,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """FastAPI's own refusals (no such route, a method it does not take, a body it cannot
        parse) in the same shape as every other error."""
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "invalid_request_error")
        if exc.status_code >= 500:
            kind = "internal_error"
        return JSONResponse(
            error_body(str(exc.detail), kind, None, exc.status_code), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A limit or a check of ours first: for a union, the other members' type errors say less.
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "value_error")
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        message = "; ".join(f"{_field(tuple(e['loc']))}: {e['msg']}" for e in errors)
        return JSONResponse(error_body(message, "invalid_request_error", _field(tuple(first["loc"])), 422), 422)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        cause = _cause(exc)
        if isinstance(cause, LlamarayError):
            return await llamaray_error(request, cause)
        from ray.serve.exceptions import BackPressureError

        if isinstance(cause, BackPressureError):
            return JSONResponse(
                error_body("the model is at capacity; retry shortly", "service_unavailable", None, 503),
                503,
                headers={"Retry-After": "1"},
            )
        incident = uuid.uuid4().hex[:12]  # the log has the details; the answer names them only
        logger.exception("unexpected error on %s (incident %s)", request.url.path, incident)
        return JSONResponse(
            error_body(f"internal error (incident {incident}, in the gateway's log)", "internal_error", None, 500), 500
        )
