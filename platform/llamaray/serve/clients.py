"""What the gateway holds of the heavy deployments: a client per Serve handle, each one an
implementation of a Protocol (`EngineClient`, `ScoringClient`, `MemoryBanks`, `Embeddings`),
so the services never see a handle and a replica that died is a 503, not a 500; and the
`EngineClient` of an engine the gateway's replica hosts itself.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from typing import Any, AsyncIterator, Iterator

import numpy as np
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from llamaray.api import openai as oai
from llamaray.api.memory_banks import MemoryBank, MemoryBankDocument, QueryMemoryBankRequest, QueryMemoryBankResponse
from llamaray.config import ModelConfig
from llamaray.engines.protocol import Conversation, EngineOutput, EngineRequest, StreamingEngine
from llamaray.errors import EngineUnavailableError, InvalidRequestError, NotFoundError
from llamaray.memory.embeddings import model_ids
from llamaray.serve.metrics import GatewayMetrics
from llamaray.serve.runtime import replica_id

MAX_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request


@contextmanager
def replica_errors(what: str) -> Iterator[None]:
    """A replica that died with its engine is a 503 while Serve starts another."""
    try:
        yield
    except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
        raise EngineUnavailableError(
            f"{what} is unavailable; its replica is being replaced ({type(exc).__name__})"
        ) from None


class ServeEngineClient:
    def __init__(self, handle, model_id: str, metrics: GatewayMetrics | None = None) -> None:
        self.handle = handle
        self.stream_handle = handle.options(stream=True)
        self.model_id = model_id
        self.metrics = metrics

    async def generate(self, request: EngineRequest) -> EngineOutput:
        with replica_errors(f"the engine of {self.model_id!r}"):
            out: EngineOutput = await self.handle.generate.remote(request)
        _count(self.metrics, self.model_id, _tokens(out))
        return out

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        responses = self.stream_handle.stream.remote(request)
        finished = False
        tokens = 0
        try:
            with replica_errors(f"the engine of {self.model_id!r}"):
                async for out in responses:
                    tokens += _tokens(out)
                    yield out
            finished = True
        finally:
            _count(self.metrics, self.model_id, tokens)
            if not finished:
                # The client went away (or the gateway failed): abort the request in the
                # engine so its slot is freed at once.
                responses.cancel()

    async def stats(self) -> dict[str, Any]:
        return await self.handle.stats.remote()


class LocalEngineClient:
    """A chat model's engine in the gateway's own replica (`gateway.engine_model`): requests go
    to it in-process, as `vllm serve`'s do, with no Serve handle between."""

    def __init__(self, engine: StreamingEngine, model: ModelConfig, metrics: GatewayMetrics | None = None) -> None:
        self.engine = engine
        self.model_id = model.model_id
        self.stream_interval_s = model.stream_interval_ms / 1000
        self.metrics = metrics

    async def generate(self, request: EngineRequest) -> EngineOutput:
        out = await self.engine.generate(request)
        _count(self.metrics, self.model_id, _tokens(out))
        return out

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        tokens = 0
        try:
            async for out in self.engine.stream(request, self.stream_interval_s):
                tokens += _tokens(out)
                yield out
        finally:
            _count(self.metrics, self.model_id, tokens)

    async def stats(self) -> dict[str, Any]:
        return {**self.engine.stats(), "replica": replica_id()}


def _tokens(out: EngineOutput) -> int:
    return sum(s.num_tokens for s in out.sequences)


def _count(metrics: GatewayMetrics | None, model_id: str, tokens: int) -> None:
    """Once per request, not per streamed event: a Ray metric update costs the event loop."""
    if metrics is not None:
        metrics.generated(model_id, tokens)


class ServePoolingClient:
    """Scores conversations or labels texts on a `PoolingModelServer` deployment."""

    def __init__(self, handle, model_id: str) -> None:
        self.handle = handle
        self.model_id = model_id

    async def score(self, conversations: list[Conversation]) -> list[float]:
        with replica_errors(f"the reward model {self.model_id!r}"):
            return await self.handle.score.remote(conversations)

    async def classify(self, texts: list[str]) -> list[dict[str, float]]:
        with replica_errors(f"the classifier {self.model_id!r}"):
            return await self.handle.classify.remote(texts)

    async def stats(self) -> dict[str, Any]:
        return await self.handle.stats.remote()


class MemoryBanksClient:
    """The MemoryBanks Protocol, answered by the `MemoryServer` deployment."""

    def __init__(self, handle) -> None:
        self.handle = handle

    async def create_memory_bank(
        self,
        bank_uuid: str,
        bank_name: str,
        documents: list[MemoryBankDocument],
        chunking: dict[str, int] | None = None,
        full_text: bool | None = None,
    ) -> None:
        await self.handle.create_memory_bank.remote(bank_uuid, bank_name, documents, chunking, full_text)

    async def get_memory_banks(self) -> list[MemoryBank]:
        return await self.handle.get_memory_banks.remote()

    async def remove_memory_bank(self, bank_uuid: str) -> str:
        return await self.handle.remove_memory_bank.remote(bank_uuid)

    async def post_insert_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        await self.handle.post_insert_memory_documents.remote(bank_uuid, documents)

    async def post_update_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        await self.handle.post_update_memory_documents.remote(bank_uuid, documents)

    async def post_get_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> list[MemoryBankDocument]:
        return await self.handle.post_get_memory_documents.remote(bank_uuid, document_uuids)

    async def remove_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> None:
        await self.handle.remove_memory_documents.remote(bank_uuid, document_uuids)

    async def query_memory_bank(self, request: QueryMemoryBankRequest) -> QueryMemoryBankResponse:
        return await self.handle.query_memory_bank.remote(request)


class EmbeddingsClient:
    """OpenAI's `/v1/embeddings` over the `EmbeddingServer` deployment."""

    def __init__(self, handle, model: str) -> None:
        self.handle = handle
        self.model = model
        self.ids = set(model_ids(model))

    async def embeddings(self, request: oai.EmbeddingRequest) -> oai.EmbeddingResponse:
        if request.model not in self.ids:
            raise NotFoundError(
                f"embedding model {request.model!r} is not served (served: {', '.join(sorted(self.ids))})", "model"
            )
        given = [request.input] if isinstance(request.input, str) or _is_ids(request.input) else request.input
        if not given or len(given) > MAX_INPUTS or any(not item for item in given):
            raise InvalidRequestError(f"input must be 1 to {MAX_INPUTS} non-empty strings or token id lists", "input")
        ids = isinstance(given[0], list)
        texts = await self.handle.decode.remote(given) if ids else given
        vectors = await self.handle.embed.remote(texts)
        if request.dimensions is not None and request.dimensions != len(vectors[0]):
            raise InvalidRequestError(f"{self.model} makes {len(vectors[0])}-dimensional embeddings", "dimensions")
        tokens = sum(map(len, given)) if ids else await self.handle.count_tokens.remote(texts)
        data = [oai.Embedding(index=i, embedding=_encoded(v, request.encoding_format)) for i, v in enumerate(vectors)]
        return oai.EmbeddingResponse(
            data=data, model=request.model, usage=oai.EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        )


def _is_ids(value: list) -> bool:
    return bool(value) and isinstance(value[0], int)


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector.tolist()
