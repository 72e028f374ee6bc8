"""A typed Python client of a running platform: every route of every API, with the `api/` types.

    from llamaray.client import LlamaRay
    from llamaray.api.inference import ChatCompletionRequest

    with LlamaRay() as lr:  # LLAMARAY_URL (default http://127.0.0.1:8000), LLAMARAY_API_KEY
        answer = lr.inference.chat_completion(ChatCompletionRequest(model="llama3_8b_chat", messages=[...]))

`AsyncLlamaRay` is the same with coroutines and async iterators. Each attribute implements its
API's Protocol (`llamaray.api`), the one the platform's services implement, so code written
against a Protocol runs in-process or over HTTP alike.
"""

from __future__ import annotations

from llamaray.client.apis import (
    AgenticSystemClient,
    DataJobsClient,
    DatasetsClient,
    EmbeddingsClient,
    InferenceClient,
    MemoryBanksClient,
    ModelsClient,
    OpenAIClient,
    PostTrainingClient,
    RewardScoringClient,
    SyntheticDataGenerationClient,
)
from llamaray.client.http import ApiError, Transport
from llamaray.client.sync import SyncProxy

__all__ = ["ApiError", "AsyncLlamaRay", "LlamaRay"]


class AsyncLlamaRay:
    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        self.http = Transport(url, api_key, timeout_s)
        self.url = self.http.url
        self.inference = InferenceClient(self.http)
        self.openai = OpenAIClient(self.http)
        self.embeddings = EmbeddingsClient(self.http)
        self.models = ModelsClient(self.http)
        self.datasets = DatasetsClient(self.http)
        self.post_training = PostTrainingClient(self.http)
        self.memory_banks = MemoryBanksClient(self.http)
        self.reward_scoring = RewardScoringClient(self.http)
        self.synthetic_data_generation = SyntheticDataGenerationClient(self.http)
        self.data_jobs = DataJobsClient(self.http)
        self.agentic_system = AgenticSystemClient(self.http)

    async def health(self) -> dict:
        """`/health`: the gateway answers (engines may still be starting)."""
        return await self.http.call("GET", "/health")

    async def ready(self) -> dict:
        """`/ready`: every model's engine answers (raises `EngineUnavailableError` when one does not)."""
        return await self.http.call("GET", "/ready")

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> "AsyncLlamaRay":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class LlamaRay(SyncProxy):
    """`AsyncLlamaRay` for code without an event loop: the same attributes and methods, each call
    answered when it is done and each stream an ordinary iterator. It runs its own loop on a
    thread, so it works inside a notebook too."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        super().__init__(lambda: AsyncLlamaRay(url, api_key, timeout_s))

    def __enter__(self) -> "LlamaRay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
