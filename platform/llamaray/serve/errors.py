"""How errors become HTTP answers: one JSON shape (OpenAI's) for every route."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from llamaray.errors import LlamarayError

logger = logging.getLogger(__name__)


def error_body(message: str, error_type: str, param: str | None, code: int) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _cause(exc: BaseException) -> BaseException:
    """The exception a replica raised, out of the `RayTaskError` that carried it."""
    return getattr(exc, "cause", None) or exc


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LlamarayError)
    async def llamaray_error(request: Request, exc: LlamarayError) -> JSONResponse:
        cause = _cause(exc)
        if not isinstance(cause, LlamarayError):
            cause = exc
        return JSONResponse(
            error_body(cause.message, cause.error_type, cause.param, cause.status_code), cause.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
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
                error_body("the model is at capacity; retry shortly", "service_unavailable", None, 503), 503
            )
        incident = uuid.uuid4().hex[:12]  # the log has the details; the answer names them only
        logger.exception("unexpected error on %s (incident %s)", request.url.path, incident)
        return JSONResponse(
            error_body(f"internal error (incident {incident}, in the gateway's log)", "internal_error", None, 500), 500
        )
