"""`PoolingModelServer`: one reward model's or classifier's engine in a Ray Serve replica
(engine class as a parameter, like `LLMServer`)."""

from __future__ import annotations

from typing import Any

from llamaray.config import ModelConfig
from llamaray.engines.pooling import PoolingEngine
from llamaray.engines.protocol import Conversation, ScoringEngine
from llamaray.serve.runtime import replica_id


class PoolingModelServer:
    def __init__(self, model: dict[str, Any], engine_class: type[ScoringEngine] = PoolingEngine) -> None:
        self.engine: ScoringEngine = engine_class(ModelConfig.model_validate(model))

    async def score(self, conversations: list[Conversation]) -> list[float]:
        return await self.engine.score(conversations)

    async def classify(self, texts: list[str]) -> list[dict[str, float]]:
        return await self.engine.classify(texts)

    async def stats(self) -> dict[str, Any]:
        return {**self.engine.stats(), "replica": replica_id()}

    async def check_health(self) -> None:
        """Serve calls this periodically; a dead engine marks the replica unhealthy."""
        await self.engine.check_health()
