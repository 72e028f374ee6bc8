"""Synthetic data generation API: k generations per prompt, scored, then filtered.

The draft types `reward_scoring` as the RewardScoring service itself, which cannot travel in
JSON; API.md's decision reads it as the reward model to score with and adds the fields a user
needs to run the pipeline.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Protocol

from pydantic import Field

from llamaray.api.common import ApiModel, Message, ModelId, SamplingParams
from llamaray.api.reward_scoring import KScoredPromptGenerations


class FilteringFunction(str, Enum):
    none = "none"
    random = "random"
    top_k = "top_k"
    top_p = "top_p"
    top_k_top_p = "top_k_top_p"
    sigmoid = "sigmoid"


class SyntheticDataGenerationRequest(ApiModel):
    prompts: list[Message] = Field(min_length=1)
    filtering_function: FilteringFunction = FilteringFunction.none
    reward_scoring: ModelId | None = None  # the reward model to score with
    model: ModelId | None = None  # the generator; the deployment's default chat model if unset
    num_generations: int = Field(default=1, ge=1, le=64)
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    max_tokens: int = Field(default=0, ge=0)
    top_k: int = Field(default=1, ge=1)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class SyntheticDataGenerationResponse(ApiModel):
    synthetic_data: list[KScoredPromptGenerations]
    statistics: dict[str, Any] | None = None


class SyntheticDataGeneration(Protocol):
    async def post_generate(
        self, request: SyntheticDataGenerationRequest
    ) -> SyntheticDataGenerationResponse: ...
