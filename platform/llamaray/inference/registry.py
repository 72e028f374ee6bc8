"""Which models the platform serves, and how to reach each one's engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from llamaray.config import ModelConfig
from llamaray.engines.protocol import EngineClient, ScoringClient
from llamaray.errors import NotFoundError

PROBE_TIMEOUT_S = 10


@dataclass
class RegisteredModel:
    config: ModelConfig
    client: EngineClient | ScoringClient  # by the model's kind


class ModelRegistry:
    def __init__(self, models: list[RegisteredModel]) -> None:
        self.models = models
        self._by_id = {model_id: m for m in models for model_id in m.config.ids}

    def get(self, model_id: str, kind: str = "chat", param: str = "model") -> RegisteredModel:
        model = self._by_id.get(model_id)
        if model is None or model.config.kind != kind:
            served = sorted(i for m in self.models if m.config.kind == kind for i in m.config.ids)
            raise NotFoundError(f"model {model_id!r} is not served here; {kind} models: {served}", param)
        return model

    async def engines(self) -> list[dict[str, Any]]:
        """Every model's engine stats; an engine that cannot answer is reported unhealthy."""

        async def probe(model: RegisteredModel) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(model.client.stats(), timeout=PROBE_TIMEOUT_S)
            except Exception as exc:  # an engine that cannot answer is the answer
                return {"model": model.config.model_id, "healthy": False, "error": repr(exc)}

        return list(await asyncio.gather(*(probe(m) for m in self.models)))
