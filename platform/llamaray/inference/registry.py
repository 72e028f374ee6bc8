"""Which models the platform serves, and how to reach each one's engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol

from llamaray.config import ModelConfig
from llamaray.errors import NotFoundError
from llamaray.inference.engine import EngineOutput, EngineRequest


class EngineClient(Protocol):
    """What a service needs of an engine: a Serve handle in production, the engine in-process in a benchmark."""

    async def generate(self, request: EngineRequest) -> EngineOutput: ...

    def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]: ...

    async def stats(self) -> dict: ...


@dataclass
class RegisteredModel:
    config: ModelConfig
    client: EngineClient


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
