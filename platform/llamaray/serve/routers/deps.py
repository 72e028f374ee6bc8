"""The services a router calls, installed once per gateway replica.

Each is typed by its API's Protocol, so a router knows the API and nothing of what implements
it (the gateway wires the implementations). Serve runs a pickled copy of the FastAPI app in each
replica, so state set on the module's `app` object would not reach the routes; the replica's
module globals do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request

from llamaray.api.agentic_system import AgenticSystem
from llamaray.api.data_jobs import DataJobs
from llamaray.api.datasets import Datasets
from llamaray.api.inference import Inference
from llamaray.api.memory_banks import MemoryBanks
from llamaray.api.models import Models
from llamaray.api.openai import Embeddings, OpenAICompatible
from llamaray.api.post_training import PostTraining
from llamaray.api.reward_scoring import RewardScoring
from llamaray.api.synthetic_data_generation import SyntheticDataGeneration
from llamaray.security.ownership import Principal


class Readiness(Protocol):
    async def engines(self) -> list[dict[str, Any]]:
        """Each served model's engine stats, `healthy` among them."""
        ...


class AccessControl(Protocol):
    """Who may call: asked by the gateway's `AccessMiddleware` before any route runs."""

    def check(self, path: str, client_host: str | None, headers: dict[str, str]) -> tuple[int, str] | None:
        """The status and reason a request is refused with, or None."""
        ...

    def origin_allowed(self, origin: str, host_header: str) -> bool: ...

    def docs_served(self) -> bool: ...

    def principal(self, headers: dict[str, str]) -> Principal:
        """Whom a request acts as, once `check` let it through."""
        ...


class RequestMetrics(Protocol):
    def request(self, route: str, method: str, status: int, seconds: float) -> None: ...


@dataclass
class Services:
    readiness: Readiness
    inference: Inference
    openai: OpenAICompatible
    models: Models
    datasets: Datasets
    post_training: PostTraining
    memory: MemoryBanks
    embeddings: Embeddings
    reward_scoring: RewardScoring
    synthetic_data: SyntheticDataGeneration
    data_jobs: DataJobs
    agents: AgenticSystem
    metrics: RequestMetrics | None = None
    access: AccessControl | None = None  # None: the gateway answers nothing but 503


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
