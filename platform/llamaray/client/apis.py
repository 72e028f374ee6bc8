"""One client per API, each an implementation of that API's Protocol over HTTP.

`tests/unit/test_protocols.py` checks each against its Protocol as it checks the services, so a
route that changes its API changes its client or fails there. Streaming methods answer async
iterators of the API's chunk types, as the services do.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import AsyncIterator, Union

from pydantic import TypeAdapter

from llamaray.api import openai as oai
from llamaray.api.agentic_system import (
    AgenticSystemCreateRequest,
    AgenticSystemCreateResponse,
    AgenticSystemExecuteRequest,
    AgenticSystemExecuteResponse,
    AgenticSystemExecuteResponseStreamChunk,
    AgenticSystemInfo,
)
from llamaray.api.data_jobs import BatchJobRequest, DataJobStatusResponse
from llamaray.api.datasets import CreateDatasetRequest, Dataset
from llamaray.api.inference import (
    BatchChatCompletionRequest,
    BatchCompletionRequest,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionResponseStreamChunk,
    CompletionRequest,
    CompletionResponse,
    CompletionResponseStreamChunk,
)
from llamaray.api.memory_banks import MemoryBank, MemoryBankDocument, QueryMemoryBankRequest, QueryMemoryBankResponse
from llamaray.api.models import Adapter, RegisterAdapterRequest, UnregisterAdapterRequest
from llamaray.api.post_training import (
    PostTrainingJobArtifactsResponse,
    PostTrainingJobLogStream,
    PostTrainingJobStatusResponse,
    PostTrainingRLHFRequest,
    PostTrainingSFTRequest,
)
from llamaray.api.reward_scoring import RewardScoringRequest, RewardScoringResponse
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest, SyntheticDataGenerationResponse
from llamaray.client.http import Transport


async def _models(events: AsyncIterator[dict], model: type) -> AsyncIterator:
    async for event in events:
        yield model.model_validate(event)


async def _texts(events: AsyncIterator[dict]) -> AsyncIterator[str]:
    async for event in events:
        yield json.dumps(event)


def _list(model: type, data: object) -> list:
    return TypeAdapter(list[model]).validate_python(data)


class InferenceClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def completion(
        self, request: CompletionRequest
    ) -> Union[CompletionResponse, AsyncIterator[CompletionResponseStreamChunk]]:
        if request.stream:
            events = self.http.events("POST", "/inference/completion", body=request)
            return _models(events, CompletionResponseStreamChunk)
        return CompletionResponse.model_validate(await self.http.call("POST", "/inference/completion", body=request))

    async def chat_completion(
        self, request: ChatCompletionRequest
    ) -> Union[ChatCompletionResponse, AsyncIterator[ChatCompletionResponseStreamChunk]]:
        if request.stream:
            events = self.http.events("POST", "/inference/chat_completion", body=request)
            return _models(events, ChatCompletionResponseStreamChunk)
        return ChatCompletionResponse.model_validate(
            await self.http.call("POST", "/inference/chat_completion", body=request)
        )

    async def batch_completion(self, request: BatchCompletionRequest) -> list[CompletionResponse]:
        return _list(CompletionResponse, await self.http.call("POST", "/inference/batch_completion", body=request))

    async def batch_chat_completion(self, request: BatchChatCompletionRequest) -> list[ChatCompletionResponse]:
        answer = await self.http.call("POST", "/inference/batch_chat_completion", body=request)
        return _list(ChatCompletionResponse, answer)


class OpenAIClient:
    """The `/v1` routes; a stream yields each chunk's JSON, as the Protocol does (the official
    `openai` client, pointed at `<url>/v1`, parses them into its own types)."""

    def __init__(self, http: Transport) -> None:
        self.http = http

    async def models(self) -> oai.ModelList:
        return oai.ModelList.model_validate(await self.http.call("GET", "/v1/models"))

    async def model(self, model_id: str) -> oai.ModelCard:
        model_id = urllib.parse.quote(model_id, safe="/:")  # ids have '/' in them, as the route takes
        return oai.ModelCard.model_validate(await self.http.call("GET", f"/v1/models/{model_id}"))

    async def chat_completions(self, request: oai.ChatCompletionRequest) -> oai.ChatCompletion | AsyncIterator[str]:
        if request.stream:
            return _texts(self.http.events("POST", "/v1/chat/completions", body=request))
        return oai.ChatCompletion.model_validate(await self.http.call("POST", "/v1/chat/completions", body=request))

    async def completions(self, request: oai.CompletionRequest) -> oai.Completion | AsyncIterator[str]:
        if request.stream:
            return _texts(self.http.events("POST", "/v1/completions", body=request))
        return oai.Completion.model_validate(await self.http.call("POST", "/v1/completions", body=request))


class EmbeddingsClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def embeddings(self, request: oai.EmbeddingRequest) -> oai.EmbeddingResponse:
        return oai.EmbeddingResponse.model_validate(await self.http.call("POST", "/v1/embeddings", body=request))


class ModelsClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def list_adapters(self) -> list[Adapter]:
        return _list(Adapter, await self.http.call("GET", "/models/adapters"))

    async def register_adapter(self, request: RegisterAdapterRequest) -> Adapter:
        return Adapter.model_validate(await self.http.call("POST", "/models/adapters/register", body=request))

    async def unregister_adapter(self, adapter_id: str) -> None:
        body = UnregisterAdapterRequest(adapter_id=adapter_id)
        await self.http.call("POST", "/models/adapters/unregister", body=body)


class DatasetsClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def create_dataset(self, request: CreateDatasetRequest) -> None:
        await self.http.call("POST", "/datasets/create", body=request)

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(await self.http.call("GET", "/datasets/get", params={"dataset_id": dataset_id}))

    async def delete_dataset(self, dataset_id: str) -> None:
        await self.http.call("DELETE", "/datasets/delete", params={"dataset_id": dataset_id})


class PostTrainingClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def post_supervised_fine_tune(self, request: PostTrainingSFTRequest) -> None:
        await self.http.call("POST", "/post_training/supervised_fine_tune/", body=request)

    async def post_preference_optimize(self, request: PostTrainingRLHFRequest) -> None:
        await self.http.call("POST", "/post_training/preference_optimize/", body=request)

    async def get_training_job_logstream(self, job_uuid: str) -> PostTrainingJobLogStream:
        answer = await self.http.call("GET", "/post_training/job/logs", params={"job_uuid": job_uuid})
        return PostTrainingJobLogStream.model_validate(answer)

    async def follow_training_job_logs(self, job_uuid: str) -> AsyncIterator[PostTrainingJobLogStream]:
        """The log so far, then each new batch of lines until the job ends (one SSE stream)."""
        events = self.http.events("GET", "/post_training/job/logs", params={"job_uuid": job_uuid})
        return _models(events, PostTrainingJobLogStream)

    async def get_training_job_status(self, job_uuid: str) -> PostTrainingJobStatusResponse:
        answer = await self.http.call("GET", "/post_training/job/status", params={"job_uuid": job_uuid})
        return PostTrainingJobStatusResponse.model_validate(answer)

    async def list_training_jobs(self) -> list[PostTrainingJobStatusResponse]:
        return _list(PostTrainingJobStatusResponse, await self.http.call("GET", "/post_training/jobs"))

    async def cancel_training_job(self, job_uuid: str) -> None:
        await self.http.call("POST", "/post_training/job/cancel", params={"job_uuid": job_uuid})

    async def get_training_job_plot(self, job_uuid: str) -> bytes:
        return await self.http.content("GET", "/post_training/job/plot", params={"job_uuid": job_uuid})

    async def get_training_job_artifacts(self, job_uuid: str) -> PostTrainingJobArtifactsResponse:
        answer = await self.http.call("GET", "/post_training/job/artifacts", params={"job_uuid": job_uuid})
        return PostTrainingJobArtifactsResponse.model_validate(answer)


class MemoryBanksClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def create_memory_bank(
        self,
        bank_uuid: str,
        bank_name: str,
        documents: list[MemoryBankDocument],
        chunking: dict[str, int] | None = None,
        full_text: bool | None = None,
    ) -> None:
        params = {"bank_uuid": bank_uuid, "bank_name": bank_name, "full_text": full_text, **(chunking or {})}
        await self.http.call("POST", "/memory_banks/create", params=params, body=documents)

    async def get_memory_banks(self) -> list[MemoryBank]:
        return _list(MemoryBank, await self.http.call("GET", "/memory_banks/get"))

    async def remove_memory_bank(self, bank_uuid: str) -> str:
        return await self.http.call("DELETE", "/memory_banks/drop", params={"bank_uuid": bank_uuid})

    async def post_insert_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        await self.http.call("POST", "/memory_bank/insert", params={"bank_uuid": bank_uuid}, body=documents)

    async def post_update_memory_documents(self, bank_uuid: str, documents: list[MemoryBankDocument]) -> None:
        await self.http.call("POST", "/memory_bank/update", params={"bank_uuid": bank_uuid}, body=documents)

    async def post_get_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> list[MemoryBankDocument]:
        answer = await self.http.call("POST", "/memory_bank/get", params={"bank_uuid": bank_uuid}, body=document_uuids)
        return _list(MemoryBankDocument, answer)

    async def remove_memory_documents(self, bank_uuid: str, document_uuids: list[str]) -> None:
        await self.http.call("POST", "/memory_bank/delete", params={"bank_uuid": bank_uuid}, body=document_uuids)

    async def query_memory_bank(self, request: QueryMemoryBankRequest) -> QueryMemoryBankResponse:
        return QueryMemoryBankResponse.model_validate(await self.http.call("POST", "/memory_bank/query", body=request))


class RewardScoringClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def post_score(self, request: RewardScoringRequest) -> RewardScoringResponse:
        return RewardScoringResponse.model_validate(await self.http.call("POST", "/reward_scoring/score", body=request))


class SyntheticDataGenerationClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def post_generate(self, request: SyntheticDataGenerationRequest) -> SyntheticDataGenerationResponse:
        answer = await self.http.call("POST", "/synthetic_data_generation/generate", body=request)
        return SyntheticDataGenerationResponse.model_validate(answer)


class DataJobsClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def submit_batch_job(self, request: BatchJobRequest) -> DataJobStatusResponse:
        return DataJobStatusResponse.model_validate(await self.http.call("POST", "/data_jobs/batch", body=request))

    async def list_data_jobs(self) -> list[DataJobStatusResponse]:
        return _list(DataJobStatusResponse, await self.http.call("GET", "/data_jobs/list"))

    async def get_data_job_status(self, job_uuid: str) -> DataJobStatusResponse:
        answer = await self.http.call("GET", "/data_jobs/status", params={"job_uuid": job_uuid})
        return DataJobStatusResponse.model_validate(answer)

    async def get_data_job_logs(self, job_uuid: str) -> list[str]:
        return await self.http.call("GET", "/data_jobs/logs", params={"job_uuid": job_uuid})

    async def cancel_data_job(self, job_uuid: str) -> None:
        await self.http.call("POST", "/data_jobs/cancel", params={"job_uuid": job_uuid})


class AgenticSystemClient:
    def __init__(self, http: Transport) -> None:
        self.http = http

    async def create_agentic_system(self, request: AgenticSystemCreateRequest) -> AgenticSystemCreateResponse:
        answer = await self.http.call("POST", "/agentic_system/create", body=request)
        return AgenticSystemCreateResponse.model_validate(answer)

    async def create_agentic_system_execute(
        self, request: AgenticSystemExecuteRequest
    ) -> Union[AgenticSystemExecuteResponse, AsyncIterator[AgenticSystemExecuteResponseStreamChunk]]:
        if request.stream:
            events = self.http.events("POST", "/agentic_system/execute", body=request)
            return _models(events, AgenticSystemExecuteResponseStreamChunk)
        answer = await self.http.call("POST", "/agentic_system/execute", body=request)
        return AgenticSystemExecuteResponse.model_validate(answer)

    async def delete_agentic_system(self, agent_id: str) -> None:
        await self.http.call("DELETE", "/agentic_system/delete", params={"agent_id": agent_id})

    async def get_agentic_system(self, agent_id: str) -> AgenticSystemInfo:
        answer = await self.http.call("GET", "/agentic_system/get", params={"agent_id": agent_id})
        return AgenticSystemInfo.model_validate(answer)

    async def list_agentic_systems(self) -> list[AgenticSystemCreateRequest]:
        return _list(AgenticSystemCreateRequest, await self.http.call("GET", "/agentic_system/list"))
