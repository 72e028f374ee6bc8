"""Every implementation of an API, and every client the gateway holds, matches its Protocol
method by method: the same names, parameters, defaults, types and async-ness (as Llama Stack
checks its providers). A drift is a failing test here, not a 500 inside a replica."""

from __future__ import annotations

import inspect
import types
import typing

import pytest

from llamaray.agents.service import AgenticSystemService
from llamaray.agents.shields import CodeGuardShield, LlamaGuardShield, PromptGuardShield, Shield
from llamaray.agents.turn import StepMetrics
from llamaray.api.agentic_system import AgenticSystem
from llamaray.api.data_jobs import DataJobs
from llamaray.api.datasets import Datasets
from llamaray.api.inference import Inference
from llamaray.api.memory_banks import MemoryBanks
from llamaray.api.models import Models
from llamaray.api.openai import Embeddings, OpenAICompatible
from llamaray.api.post_training import PostTraining
from llamaray.api.protocols import protocol_methods
from llamaray.api.reward_scoring import RewardScoring
from llamaray.api.synthetic_data_generation import SyntheticDataGeneration
from llamaray.client import apis as client
from llamaray.datasets.service import DatasetsService
from llamaray.engines.offline_vllm import OfflineVLLMEngine
from llamaray.engines.pooling import PoolingEngine
from llamaray.engines.protocol import Engine, EngineClient, ScoringClient, ScoringEngine, StreamingEngine
from llamaray.engines.vllm_engine import VLLMEngine
from llamaray.inference.adapters import AdapterCatalog, JobRecords
from llamaray.inference.openai_service import OpenAIService
from llamaray.inference.registry import AdapterClient, DeployedModels, ModelRegistry
from llamaray.inference.reward_scoring import RewardScoringService
from llamaray.inference.service import BatchJobs, InferenceService
from llamaray.jobs.control import JobControl
from llamaray.jobs.tracker import TrackerRecords
from llamaray.memory.owned import OwnedMemoryBanks
from llamaray.memory.service import MemoryService
from llamaray.pipelines.service import DataJobsService, SyntheticDataGenerationService
from llamaray.security.access import AccessPolicy
from llamaray.serve import deployed
from llamaray.serve.clients import EmbeddingsClient, MemoryBanksClient, ServeEngineClient, ServePoolingClient
from llamaray.serve.metrics import GatewayMetrics
from llamaray.serve.routers.deps import AccessControl, Readiness, RequestMetrics, Services
from llamaray.training.service import PostTrainingService

IMPLEMENTATIONS = [
    (AgenticSystem, AgenticSystemService),
    (Shield, LlamaGuardShield),
    (Shield, CodeGuardShield),
    (Shield, PromptGuardShield),
    (AccessControl, AccessPolicy),
    (Inference, InferenceService),
    (OpenAICompatible, OpenAIService),
    (Models, AdapterCatalog),
    (Models, deployed.PlatformModels),
    (DeployedModels, deployed.DeployedModels),
    (JobRecords, JobControl),
    (JobRecords, TrackerRecords),
    (EngineClient, AdapterClient),
    (Embeddings, EmbeddingsClient),
    (Datasets, DatasetsService),
    (PostTraining, PostTrainingService),
    (MemoryBanks, MemoryService),
    (MemoryBanks, MemoryBanksClient),
    (MemoryBanks, OwnedMemoryBanks),
    (RewardScoring, RewardScoringService),
    (SyntheticDataGeneration, SyntheticDataGenerationService),
    (DataJobs, DataJobsService),
    (BatchJobs, DataJobsService),
    (StreamingEngine, VLLMEngine),
    (Engine, OfflineVLLMEngine),
    (ScoringEngine, PoolingEngine),
    (EngineClient, ServeEngineClient),
    (ScoringClient, ServePoolingClient),
    (ScoringClient, PoolingEngine),
    (Readiness, ModelRegistry),
    (RequestMetrics, GatewayMetrics),
    (StepMetrics, GatewayMetrics),
    # llamaray.client: the same APIs over HTTP
    (Inference, client.InferenceClient),
    (OpenAICompatible, client.OpenAIClient),
    (Embeddings, client.EmbeddingsClient),
    (Models, client.ModelsClient),
    (Datasets, client.DatasetsClient),
    (PostTraining, client.PostTrainingClient),
    (MemoryBanks, client.MemoryBanksClient),
    (RewardScoring, client.RewardScoringClient),
    (SyntheticDataGeneration, client.SyntheticDataGenerationClient),
    (DataJobs, client.DataJobsClient),
    (AgenticSystem, client.AgenticSystemClient),
]


def kind(function) -> str:
    if inspect.iscoroutinefunction(function):
        return "async"
    if inspect.isasyncgenfunction(function):
        return "async generator"
    return "sync"


def normal(hint):
    """A type hint compared by meaning: `X | Y` and `Union[X, Y]` are one type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return ("union", frozenset(normal(arg) for arg in typing.get_args(hint)))
    if origin is not None:
        return (origin, tuple(normal(arg) for arg in typing.get_args(hint)))
    return hint


def mismatches(protocol: type, implementation: type) -> list[str]:
    problems = []
    for name in protocol_methods(protocol):
        declared = getattr(protocol, name)
        actual = getattr(implementation, name, None)
        if actual is None or not callable(actual):
            problems.append(f"{name}: missing")
            continue
        want, have = kind(declared), kind(actual)
        # A Protocol's `def stream(...) -> AsyncIterator[...]` is what an async generator is.
        if want != have and not (want == "sync" and have == "async generator"):
            problems.append(f"{name}: {have}, the Protocol says {want}")
        declared_hints, actual_hints = typing.get_type_hints(declared), typing.get_type_hints(actual)
        want_params = [p for p in inspect.signature(declared).parameters.values() if p.name != "self"]
        have_params = [p for p in inspect.signature(actual).parameters.values() if p.name != "self"]
        if len(have_params) > len(want_params):  # even with defaults: a caller of the Protocol cannot pass them
            problems.append(
                f"{name}: parameters the Protocol lacks: {[p.name for p in have_params[len(want_params) :]]}"
            )
        for want_p, have_p in zip(want_params, have_params):
            if (want_p.name, want_p.kind, want_p.default) != (have_p.name, have_p.kind, have_p.default):
                problems.append(f"{name}: parameter {have_p} where the Protocol has {want_p}")
            elif normal(declared_hints.get(want_p.name)) != normal(actual_hints.get(have_p.name)):
                problems.append(
                    f"{name}({want_p.name}): {actual_hints.get(have_p.name)} != {declared_hints.get(want_p.name)}"
                )
        if len(have_params) < len(want_params):
            problems.append(f"{name}: lacks parameters {[p.name for p in want_params[len(have_params) :]]}")
        if normal(declared_hints.get("return")) != normal(actual_hints.get("return")):
            problems.append(
                f"{name}: returns {actual_hints.get('return')}, the Protocol says {declared_hints.get('return')}"
            )
    return problems


@pytest.mark.parametrize(
    ("protocol", "implementation"), IMPLEMENTATIONS, ids=[f"{p.__name__}-{i.__name__}" for p, i in IMPLEMENTATIONS]
)
def test_implementation_matches_its_protocol(protocol, implementation):
    assert not mismatches(protocol, implementation)


def test_every_service_the_routers_use_has_a_checked_implementation():
    hints = typing.get_type_hints(Services)
    checked = {protocol for protocol, _ in IMPLEMENTATIONS}
    for field, hint in hints.items():
        protocols = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
        assert all(p in checked for p in protocols), f"Services.{field} ({hint}) has no implementation checked here"


def test_the_check_finds_a_drift():
    class Drifted:
        async def create_memory_bank(self, bank_uuid: str, bank_name: str, documents: list) -> None: ...

    class Extended:
        async def get_memory_banks(self, limit: int = 10) -> list: ...

    problems = mismatches(MemoryBanks, Drifted)
    assert "create_memory_bank: lacks parameters ['chunking', 'full_text']" in problems
    assert "get_memory_banks: missing" in problems
    assert "get_memory_banks: parameters the Protocol lacks: ['limit']" in mismatches(MemoryBanks, Extended)
