"""The synchronous face of the async client: one event loop on a thread of its own.

A blocking call hands its coroutine to that loop and waits; an async iterator comes back as a
plain iterator that fetches each item the same way. Written once for every API, so the sync and
async clients cannot drift apart.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, AsyncIterator, Callable, Iterator


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llamaray-client", daemon=True)
        self.thread.start()

    def run(self, awaitable: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _iterate(loop: _Loop, items: AsyncIterator) -> Iterator:
    """Each item of an async iterator, fetched on the client's loop; left early, it is closed
    there too (a stream's connection is released, not leaked)."""
    try:
        while True:
            try:
                yield loop.run(anext(items))
            except StopAsyncIteration:
                return
    finally:
        closing = getattr(items, "aclose", None)
        if closing is not None:
            loop.run(closing())


def _blocking(loop: _Loop, method: Callable) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        result = loop.run(method(*args, **kwargs))
        return _iterate(loop, result) if hasattr(result, "__anext__") else result

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class SyncProxy:
    """Wraps an object built on the loop's thread: its coroutine methods become blocking, its
    other attributes that hold API clients are wrapped the same way."""

    def __init__(self, build: Callable[[], Any], loop: _Loop | None = None) -> None:
        self._loop = loop or _Loop()
        self._target = self._loop.run(_built(build))
        self._apis: dict[str, SyncProxy] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.iscoroutinefunction(value):
            return _blocking(self._loop, value)
        if type(value).__module__ == "llamaray.client.apis":  # one API's client, wrapped once
            if name not in self._apis:
                self._apis[name] = SyncProxy(lambda: value, self._loop)
            return self._apis[name]
        return value

    def close(self) -> None:
        self._loop.run(self._target.close())
        self._loop.stop()


async def _built(build: Callable[[], Any]) -> Any:
    return build()
