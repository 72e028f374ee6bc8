"""`Gateway`: the platform's HTTP front door, a FastAPI app as a Ray Serve ingress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from ray import serve

from llamaray.agents.service import AgenticSystemService
from llamaray.agents.tools import BuiltinTools
from llamaray.api.limits import use_limits
from llamaray.config import ModelConfig, PlatformConfig
from llamaray.datasets.service import DatasetsService
from llamaray.engines.protocol import EngineOutput, EngineRequest
from llamaray.inference.adapters import AdapterCatalog
from llamaray.inference.openai_service import OpenAIService
from llamaray.inference.prompt_format import prompt_format_for
from llamaray.inference.registry import ModelRegistry, RegisteredModel
from llamaray.inference.reward_scoring import RewardScoringService
from llamaray.inference.service import InferenceService
from llamaray.jobs.tracker import TrackerRecords, tracker_actor
from llamaray.memory.embeddings import model_ids
from llamaray.memory.owned import OwnedMemoryBanks
from llamaray.pipelines.service import DataJobsService, SyntheticDataGenerationService
from llamaray.security.access import AccessPolicy
from llamaray.security.ownership import Owners
from llamaray.serve.access import AccessMiddleware, serve_http_host
from llamaray.serve.clients import (
    EmbeddingsClient,
    LocalEngineClient,
    MemoryBanksClient,
    ServeEngineClient,
    ServePoolingClient,
)
from llamaray.serve.deployed import DeployedModels, PlatformModels, model_deployer
from llamaray.serve.errors import install_error_handlers
from llamaray.serve.llm_server import start_engine
from llamaray.serve.metrics import GatewayMetrics
from llamaray.serve.request_guard import RequestGuard
from llamaray.serve.routers import (
    agentic_system,
    datasets,
    deps,
    health,
    inference,
    memory_banks,
    models,
    openai,
    post_training,
    reward_scoring,
    synthetic_data_generation,
)
from llamaray.serve.routers.deps import Services
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage
from llamaray.training.service import PostTrainingService


class MetricsMiddleware:
    """Counts each answer by route and status and times it to its first byte.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware`) runs every
    request through an extra task and memory stream, which cost the gateway a fifth of its CPU.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        services = deps.installed()
        if scope["type"] != "http" or services is None or services.metrics is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        def record(status: int) -> None:
            path = getattr(scope.get("route"), "path", "unmatched")
            services.metrics.request(path, scope["method"], status, time.perf_counter() - started)

        async def send_and_record(message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            if not answered:  # the outermost error middleware answers it with a 500
                record(500)
            raise


def create_app() -> FastAPI:
    app = FastAPI(
        title="llamaray",
        description="The Llama Stack API (draft of 2024-07-11) and an OpenAI-compatible API, served on Ray.",
        version="0.1.0",
    )
    install_error_handlers(app)
    routers = (
        health,
        inference,
        openai,
        models,
        datasets,
        post_training,
        memory_banks,
        reward_scoring,
        synthetic_data_generation,
        agentic_system,
    )
    for module in routers:
        app.include_router(module.router)

    app.add_middleware(RequestGuard)  # after the door: a body is read only for a caller let in
    app.add_middleware(AccessMiddleware)
    app.add_middleware(MetricsMiddleware)  # outermost: refusals are counted too
    return app


app = create_app()


@serve.deployment(name="Gateway")
@serve.ingress(app)
class Gateway:
    """Builds the services once per replica; the routes on `app` reach them through `deps`.

    `engines` holds a Serve handle per model with a deployment of its own; the model named by
    `gateway.engine_model` has none: its engine starts here, in each gateway replica.
    """

    def __init__(self, config: dict[str, Any], engines: dict[str, Any], memory: Any, embedder: Any) -> None:
        platform = PlatformConfig.model_validate(config)
        use_limits(platform.limits)  # what the API types check requests against, in this replica
        access = AccessPolicy(platform.security)
        access.check_binding(serve_http_host())  # before anything starts: refuse to serve open
        metrics = GatewayMetrics()
        hosted = platform.gateway_model
        self.engine = start_engine(hosted) if hosted is not None else None
        self.hosted = LocalEngineClient(self.engine, hosted, metrics) if hosted is not None else None
        clients = {m.model_id: _client(m, engines.get(m.model_id), metrics) for m in platform.models if m is not hosted}
        if hosted is not None:
            clients[hosted.model_id] = self.hosted
        store = MetadataStore.of_platform(platform.data_dir, platform.metadata_url)
        tracker = tracker_actor(platform.model_dump())
        tracker.configure.remote(platform.model_dump())  # a tracker from an earlier platform takes this one's
        embedding_ids = model_ids(platform.memory.embedding_model)
        roots = [Path(root) for root in platform.dataset_roots]
        storage = SharedStorage.of_platform(platform)
        adapters = AdapterCatalog(platform.models, TrackerRecords(tracker), store, roots, set(embedding_ids), storage)
        deployed = DeployedModels(platform, store, model_deployer(platform.model_dump()), metrics)
        served = [
            RegisteredModel(m, clients[m.model_id], prompt_format=prompt_format_for(m.path, m.prompt_format))
            if m.kind == "chat"
            else RegisteredModel(m, clients[m.model_id])
            for m in platform.models
        ]
        registry = ModelRegistry(served, adapters, deployed)
        data_jobs = DataJobsService(platform, tracker, store, adapters)
        memory_banks = OwnedMemoryBanks(MemoryBanksClient(memory), Owners(store))  # each key its own banks
        deps.install(
            Services(
                readiness=registry,
                inference=InferenceService(registry, data_jobs, platform.data.batch_inline_max_prompts),
                openai=OpenAIService(
                    registry, embedding_ids, Path(platform.data_dir), Path(storage.root) if storage.local else None
                ),
                models=PlatformModels(adapters, deployed),
                datasets=DatasetsService(store, roots, storage, platform.outbound),
                post_training=PostTrainingService(platform, tracker, store),
                memory=memory_banks,
                embeddings=EmbeddingsClient(embedder, platform.memory.embedding_model),
                reward_scoring=RewardScoringService(registry),
                synthetic_data=SyntheticDataGenerationService(platform, registry, store, data_jobs),
                data_jobs=data_jobs,
                agents=AgenticSystemService(
                    registry,
                    memory_banks,
                    store,
                    platform.agents,
                    tools=BuiltinTools(platform.agents, platform.outbound),
                    metrics=metrics,
                ),
                metrics=metrics,
                access=access,
            )
        )

    # A gateway that hosts an engine answers an `LLMServer`'s handle calls too (tools, tests).
    async def generate(self, request: EngineRequest) -> EngineOutput:
        return await self._hosted_client().generate(request)

    async def stats(self) -> dict[str, Any]:
        return await self._hosted_client().stats()

    def _hosted_client(self) -> LocalEngineClient:
        if self.hosted is None:
            raise RuntimeError("this gateway hosts no engine (gateway.engine_model is not set)")
        return self.hosted

    async def check_health(self) -> None:
        """Serve calls this periodically: a hosted engine that died takes its replica with it."""
        if self.engine is not None:
            await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()


def _client(model: ModelConfig, handle, metrics: GatewayMetrics):
    if model.pooled:
        return ServePoolingClient(handle, model.model_id)
    return ServeEngineClient(handle, model.model_id, metrics)
