"""Which models the platform serves, and how to reach each one's engine.

A chat model's adapters are models too: `chat()` answers an adapter's id with its base model's
engine, wrapped so that every request runs under the adapter.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

from llamaray.api.openai import ModelCard
from llamaray.config import ModelConfig
from llamaray.engines.protocol import AdapterRef, EngineClient, EngineOutput, EngineRequest, ScoringClient
from llamaray.errors import NotFoundError
from llamaray.inference.adapters import AdapterCatalog, adapter_ref
from llamaray.inference.prompt_format import LLAMA3, PromptFormat
from llamaray.security.ownership import current

PROBE_TIMEOUT_S = 10
HIDDEN_STATS = frozenset({"pid"})  # engines report it for tests and tools that hold a handle
ADMIN_STATS = frozenset({"adapters", "running_requests"})  # what keys do: an admin's (or keyless) to see


@dataclass
class RegisteredModel:
    config: ModelConfig
    client: EngineClient | ScoringClient  # by the model's kind
    adapter: AdapterRef | None = None
    prompt_format: PromptFormat = LLAMA3  # a chat model's (an adapter's is its base's)


class AdapterClient:
    """An `EngineClient` that runs every request under one adapter on the base model's engine."""

    def __init__(self, client: EngineClient, adapter: AdapterRef) -> None:
        self.client = client
        self.adapter = adapter

    async def generate(self, request: EngineRequest) -> EngineOutput:
        return await self.client.generate(dataclasses.replace(request, adapter=self.adapter))

    def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        return self.client.stream(dataclasses.replace(request, adapter=self.adapter))

    async def stats(self) -> dict[str, Any]:
        return await self.client.stats()


class DeployedModels(Protocol):
    """Fine-tuned models served by engine deployments of their own (`llamaray.serve.deployed`)."""

    async def find(self, model_id: str) -> RegisteredModel | None: ...

    async def cards(self) -> list[ModelCard]: ...


class ModelRegistry:
    def __init__(
        self,
        models: list[RegisteredModel],
        adapters: AdapterCatalog | None = None,
        deployed: DeployedModels | None = None,
    ) -> None:
        self.models = models
        self.adapters = adapters
        self.deployed = deployed
        self._by_id = {model_id: m for m in models for model_id in m.config.ids}

    def get(self, model_id: str, kind: str = "chat", param: str = "model") -> RegisteredModel:
        model = self._by_id.get(model_id)
        if model is None or model.config.kind != kind:
            raise self._not_served(model_id, kind, param)
        return model

    async def chat(self, model_id: str, param: str = "model") -> RegisteredModel:
        """A chat model by id or alias, a fine-tuned model deployed on its own, or an adapter."""
        model = self._by_id.get(model_id)
        if model is not None and model.config.kind == "chat":
            return model
        deployed = await self.deployed.find(model_id) if self.deployed and model is None else None
        if deployed is not None:
            return deployed
        found = await self.adapters.find(model_id, param) if self.adapters and model is None else None
        if found is None:
            raise self._not_served(model_id, "chat", param)
        base, adapter = found
        ref = adapter_ref(adapter)
        served = self._by_id[base.model_id]
        return RegisteredModel(base, AdapterClient(served.client, ref), ref, served.prompt_format)

    def _not_served(self, model_id: str, kind: str, param: str) -> NotFoundError:
        served = sorted(i for m in self.models if m.config.kind == kind for i in m.config.ids)
        more = " and their adapters (GET /v1/models lists them)" if kind == "chat" and self.adapters else ""
        return NotFoundError(f"model {model_id!r} is not served here; {kind} models: {served}{more}", param)

    async def engines(self) -> list[dict[str, Any]]:
        """Every model's engine stats as `/ready` shows them (no host details: no pid); an
        engine that cannot answer is reported unhealthy."""

        async def probe(model: RegisteredModel) -> dict[str, Any]:
            try:
                stats = await asyncio.wait_for(model.client.stats(), timeout=PROBE_TIMEOUT_S)
            except Exception as exc:  # an engine that cannot answer is the answer
                return {"model": model.config.model_id, "healthy": False, "error": type(exc).__name__}
            hidden = HIDDEN_STATS if current().admin else HIDDEN_STATS | ADMIN_STATS
            return {k: v for k, v in stats.items() if k not in hidden}

        return list(await asyncio.gather(*(probe(m) for m in self.models)))
