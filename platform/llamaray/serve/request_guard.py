"""`RequestGuard`: what a request body must be before any route parses it.

What no pydantic model can check, because it breaks the parse itself or everything after it: a
body larger than `limits.max_body_bytes` is refused with 413 as soon as its size is known (from
`Content-Length`, else while it arrives), never read whole; a JSON string holding a lone UTF-16
surrogate (`"\\ud800"`, valid JSON, not text) and the `NaN` / `Infinity` that Python's parser
takes (not JSON numbers) are refused with a 422 naming their field, since a tokenizer, SQLite,
Milvus and the JSON encoder of the answer all fail on them.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from llamaray.api.limits import current_limits
from llamaray.serve.errors import error_body

# A `\uD800`-`\uDFFF` escape (the only way a surrogate gets into a JSON body: UTF-8 cannot
# carry one) or a bare NaN / Infinity: only a body with one of these is parsed here.
SUSPECT = re.compile(rb"\\u[dD][89a-fA-F]|NaN|Infinity")
INLINE_SCAN_BYTES = 256 << 10


def _suspect(body: bytes) -> bool:
    """`SUSPECT` in `body`, found at memory speed: substring searches first (the common body has
    none of them), the regular expression only over a body with a `\\u` escape in it."""
    if b"NaN" in body or b"Infinity" in body:
        return True
    return (b"\\ud" in body or b"\\uD" in body) and SUSPECT.search(body) is not None


class NotANumber:
    """What the guard's parse makes of `NaN`, `Infinity` and `-Infinity`."""


def bad_field(value: Any, path: tuple = ()) -> tuple | None:
    """The path of the first string (or object key) in `value` that is not valid text, or of
    the first `NotANumber`."""
    if isinstance(value, NotANumber):
        return path
    if isinstance(value, str):
        return None if _is_text(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not _is_text(key):
                return (*path, key.encode("utf-8", "replace").decode())
            found = bad_field(item, (*path, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = bad_field(item, (*path, index))
            if found is not None:
                return found
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RequestGuard:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = current_limits().max_body_bytes  # the gateway's `limits:` (`use_limits`)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                await _too_large(send, limit)
                return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        # A large body is scanned (and, if suspect, parsed) off the event loop: about 1 ms a MB.
        field = await asyncio.to_thread(_bad_field, body) if len(body) > INLINE_SCAN_BYTES else _bad_field(body)
        if field is not None:
            message = f"{field}: not text (a lone UTF-16 surrogate) or not a JSON number (NaN, Infinity)"
            await _answer(send, 422, message, field)
            return
        await self.app(scope, _replay(body, receive), send)


def _bad_field(body: bytes) -> str | None:
    """The field of `body` that is not text or not a JSON number, if a quick scan suspects one."""
    return _bad_field_name(body) if _suspect(body) else None


def _bad_field_name(body: bytes) -> str | None:
    try:
        path = bad_field(json.loads(body, parse_constant=lambda _: NotANumber()))
    except (ValueError, RecursionError):  # not JSON, or nested too deep: the route's parse answers it
        return None
    if path is None:
        return None
    return ".".join(str(part) for part in path) or "body"


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the client's own messages
    (a disconnect, which streaming routes listen for)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send, limit: int) -> None:
    await _answer(send, 413, f"the request body is larger than {limit} bytes (limits.max_body_bytes)", "body")


async def _answer(send, status: int, message: str, param: str) -> None:
    data = json.dumps(error_body(message, "invalid_request_error", param, status)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
