"""The services a router calls, installed once per gateway replica.

Serve runs a pickled copy of the FastAPI app in each replica, so state set on the module's
`app` object would not reach the routes; the replica's module globals do.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from llamaray.data.datasets import DatasetsService
from llamaray.data.scoring import RewardScoringService
from llamaray.data.service import BatchInferenceService, DataJobsService, SyntheticDataGenerationService
from llamaray.inference.openai_service import OpenAIService
from llamaray.inference.registry import ModelRegistry
from llamaray.inference.service import InferenceService
from llamaray.memory.gateway_clients import EmbeddingsClient, MemoryBanksClient
from llamaray.serve.metrics import GatewayMetrics
from llamaray.store.metadata import MetadataStore
from llamaray.training.service import PostTrainingService


@dataclass
class Services:
    registry: ModelRegistry
    inference: InferenceService
    openai: OpenAIService
    store: MetadataStore
    datasets: DatasetsService
    post_training: PostTrainingService
    memory: MemoryBanksClient
    embeddings: EmbeddingsClient
    reward_scoring: RewardScoringService
    synthetic_data: SyntheticDataGenerationService
    data_jobs: DataJobsService
    batch: BatchInferenceService
    metrics: GatewayMetrics | None = None


_installed: Services | None = None


def install(services: Services) -> None:
    global _installed
    _installed = services


def installed() -> Services | None:
    return _installed


def services(request: Request) -> Services:
    if _installed is None:
        raise RuntimeError("the gateway's services are not installed yet")
    return _installed
