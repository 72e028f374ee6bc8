"""`RewardModelServer`: one reward model in a Ray Serve replica."""

from __future__ import annotations

from typing import Any

from llamaray.config import ModelConfig
from llamaray.data.reward import Conversation, RewardEngine


class RewardModelServer:
    def __init__(self, model: dict[str, Any]) -> None:
        self.engine = RewardEngine(ModelConfig.model_validate(model))

    async def score(self, conversations: list[Conversation]) -> list[float]:
        return await self.engine.score(conversations)

    async def stats(self) -> dict[str, Any]:
        return {"model": self.engine.model.model_id, "kind": "reward", "backend": type(self.engine.backend).__name__, "healthy": True}

    async def check_health(self) -> None:
        """Serve calls this periodically; a dead vLLM engine marks the replica unhealthy."""
        engine = getattr(self.engine.backend, "engine", None)
        if engine is not None:
            await engine.check_health()
