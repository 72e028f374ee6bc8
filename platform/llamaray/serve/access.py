"""`AccessMiddleware`: the gateway's door, asking `AccessPolicy` about each request first.

A plain ASGI middleware (like `MetricsMiddleware`): it answers refusals and CORS preflights
itself, in the platform's error shape, and lets everything else through to the routes.
"""

from __future__ import annotations

import json

from llamaray.security.access import DOCS_PATHS
from llamaray.security.ownership import acting_as, stop_acting
from llamaray.serve.errors import error_body
from llamaray.serve.routers import deps
from llamaray.serve.routers.deps import AccessControl

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
}
CORS_HEADERS = [
    (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type"),
    (b"access-control-max-age", b"600"),
]


class AccessMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = deps.installed()
        policy: AccessControl | None = services.access if services is not None else None
        if policy is None:  # not set up yet: closed, never open
            await _answer(send, 503, "the gateway is starting", "service_unavailable")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path, origin = scope["path"], headers.get("origin")
        if path in DOCS_PATHS and not policy.docs_served():
            await _answer(send, 404, "the API docs are turned off here (security.docs)", "not_found_error")
            return
        if scope["method"] == "OPTIONS" and origin and "access-control-request-method" in headers:
            await _preflight(send, policy.origin_allowed(origin, headers.get("host", "")), origin)
            return
        client = scope.get("client")
        refusal = policy.check(path, client[0] if client else None, headers)
        if refusal is not None:
            status, message = refusal
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await _answer(send, status, message, ERROR_TYPES[status], extra)
            return
        if origin and policy.origin_allowed(origin, headers.get("host", "")):
            send = _with_cors(send, origin)
        acting = acting_as(policy.principal(headers))  # what the services read ownership by
        try:
            await self.app(scope, receive, send)
        finally:
            stop_acting(acting)


def serve_http_host() -> str | None:
    """The address Serve's HTTP listens on (its config's `http_options.host`), or None if this
    Ray cannot say."""
    try:
        from ray.serve.context import _get_global_client

        return _get_global_client().http_config.host
    except Exception:  # a private API: the per-request loopback check still holds without it
        return None


async def _answer(send, status: int, message: str, error_type: str, extra: list | None = None) -> None:
    body = json.dumps(error_body(message, error_type, None, status)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _preflight(send, allowed: bool, origin: str) -> None:
    if not allowed:
        await _answer(send, 403, f"cross-origin requests from {origin!r} are not allowed", "permission_error")
        return
    headers = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"), *CORS_HEADERS]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send, origin: str):
    async def send_with_cors(message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                *message.get("headers", []),
                (b"access-control-allow-origin", origin.encode()),
                (b"vary", b"Origin"),
            ]
            message = {**message, "headers": headers}
        await send(message)

    return send_with_cors
