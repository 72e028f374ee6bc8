"""An `EngineClient` over a Serve handle to an `LLMServer` deployment."""

from __future__ import annotations

from contextlib import contextmanager
from typing import AsyncIterator, Iterator

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from llamaray.errors import EngineUnavailableError
from llamaray.inference.engine import EngineOutput, EngineRequest
from llamaray.serve.metrics import GatewayMetrics


@contextmanager
def replica_errors(what: str) -> Iterator[None]:
    """A replica that died with its engine is a 503 while Serve starts another."""
    try:
        yield
    except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
        raise EngineUnavailableError(f"{what} is unavailable; its replica is being replaced ({type(exc).__name__})") from None


class ServeEngineClient:
    def __init__(self, handle, model_id: str, metrics: GatewayMetrics | None = None) -> None:
        self.handle = handle
        self.stream_handle = handle.options(stream=True)
        self.model_id = model_id
        self.metrics = metrics

    async def generate(self, request: EngineRequest) -> EngineOutput:
        with replica_errors(f"the engine of {self.model_id!r}"):
            out: EngineOutput = await self.handle.generate.remote(request)
        self._count(out)
        return out

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        responses = self.stream_handle.stream.remote(request)
        finished = False
        try:
            with replica_errors(f"the engine of {self.model_id!r}"):
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


class ServeRewardClient:
    """Scores conversations on a `RewardModelServer` deployment."""

    def __init__(self, handle, model_id: str) -> None:
        self.handle = handle
        self.model_id = model_id

    async def score(self, conversations: list[list[dict[str, str]]]) -> list[float]:
        with replica_errors(f"the reward model {self.model_id!r}"):
            return await self.handle.score.remote(conversations)

    async def stats(self) -> dict:
        return await self.handle.stats.remote()
