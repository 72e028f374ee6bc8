"""`LLMServer`: one model's engine in a Ray Serve replica.

The engine class is a parameter, as in Ray's own `LLMServer`: anything that satisfies
`StreamingEngine` (vLLM's `AsyncLLM` by default) can be hosted without touching the deployment.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from llamaray.config import ModelConfig
from llamaray.engines.protocol import EngineOutput, EngineRequest, StreamingEngine
from llamaray.engines.vllm_engine import VLLMEngine
from llamaray.serve.runtime import replica_id
from llamaray.store.storage import NODE_CACHE, is_remote, local_copy_of


def start_engine(model: ModelConfig, engine_class: type[StreamingEngine] = VLLMEngine) -> StreamingEngine:
    """The model's engine in this process: an `LLMServer`'s, or a gateway replica's that hosts it."""
    if is_remote(model.path):  # a job's weights on an object store (`storage_path`): this node's copy
        model = model.model_copy(update={"path": str(local_copy_of(model.path, NODE_CACHE))})
    return engine_class(model)


class LLMServer:
    def __init__(self, model: dict[str, Any], engine_class: type[StreamingEngine] = VLLMEngine) -> None:
        config = ModelConfig.model_validate(model)
        self.engine: StreamingEngine = start_engine(config, engine_class)
        self.stream_interval_s = config.stream_interval_ms / 1000

    async def generate(self, request: EngineRequest) -> EngineOutput:
        return await self.engine.generate(request)

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        async for out in self.engine.stream(request, self.stream_interval_s):
            yield out

    async def stats(self) -> dict[str, Any]:
        return {**self.engine.stats(), "replica": replica_id()}

    async def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy and replaces it."""
        await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
