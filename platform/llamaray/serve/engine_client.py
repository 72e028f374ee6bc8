"""An `EngineClient` over a Serve handle to an `LLMServer` deployment."""

from __future__ import annotations

from typing import AsyncIterator

from llamaray.inference.engine import EngineOutput, EngineRequest
from llamaray.serve.metrics import GatewayMetrics


class ServeEngineClient:
    def __init__(self, handle, model_id: str, metrics: GatewayMetrics | None = None) -> None:
        self.handle = handle
        self.stream_handle = handle.options(stream=True)
        self.model_id = model_id
        self.metrics = metrics

    async def generate(self, request: EngineRequest) -> EngineOutput:
        out: EngineOutput = await self.handle.generate.remote(request)
        self._count(out)
        return out

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        responses = self.stream_handle.stream.remote(request)
        finished = False
        try:
            async for out in responses:
                self._count(out)
                yield out
            finished = True
        finally:
            if not finished:
                # The client went away (or the gateway failed): abort the request in the
                # engine so its slot is freed at once.
                responses.cancel()

    async def stats(self) -> dict:
        return await self.handle.stats.remote()

    def _count(self, out: EngineOutput) -> None:
        if self.metrics is not None:
            self.metrics.generated(self.model_id, sum(s.num_tokens for s in out.sequences))
