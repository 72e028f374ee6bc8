"""Synthetic data generation API: k generations per prompt, scored, then filtered.

The draft types `reward_scoring` as the RewardScoring service itself, which cannot travel in
JSON; API.md's decision reads it as the reward model to score with and adds the fields a user
needs to run the pipeline.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator
from typing_extensions import Annotated

from llamaray.api.common import ApiModel, Message, ModelId, SafeName, SamplingParams, SamplingStrategy, content_text
from llamaray.api.jobs import JobUUID
from llamaray.api.limits import INT32_MAX, Seed, at_most, check_count
from llamaray.api.reward_scoring import KScoredPromptGenerations


class FilteringFunction(str, Enum):
    none = "none"
    random = "random"
    top_k = "top_k"
    top_p = "top_p"
    top_k_top_p = "top_k_top_p"
    sigmoid = "sigmoid"


def _sampling_default() -> SamplingParams:
    # k greedy generations of one prompt would all be the same answer.
    return SamplingParams(strategy=SamplingStrategy.top_p, temperature=1.0, top_p=0.95)


class SyntheticDataGenerationRequest(ApiModel):
    prompts: Annotated[list[Message], at_most("max_prompts", "prompts")] = Field(default_factory=list)
    filtering_function: FilteringFunction = FilteringFunction.none
    reward_scoring: ModelId | None = None  # the reward model; the deployment's first one if unset
    model: ModelId | None = None  # the generator; the deployment's first chat model if unset
    num_generations: int = Field(default=1, ge=1, le=64)  # k
    sampling_params: SamplingParams = Field(default_factory=_sampling_default)
    max_tokens: int = Field(default=0, ge=0, le=INT32_MAX)
    top_k: int = Field(default=1, ge=1, le=INT32_MAX)  # for top_k, top_k_top_p and random
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)  # for top_p and top_k_top_p
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)  # for sigmoid: keep sigmoid(score) >= it
    seed: Seed = 0  # for the `random` filter (and sampling, when set)
    # Run as a Ray Data job: prompts from a registered dataset's `prompt_column` (text or
    # dialog), or forced with `run_as_job`; the output is registered as `output_dataset_id`.
    dataset_id: str | None = Field(default=None, min_length=1)
    prompt_column: str = "prompt"
    run_as_job: bool = False
    job_uuid: JobUUID | None = None
    output_dataset_id: SafeName | None = None
    output_format: Literal["jsonl", "parquet"] | None = None

    @field_validator("prompts")
    @classmethod
    def _prompts_have_text(cls, prompts: list[Message]) -> list[Message]:
        for i, prompt in enumerate(prompts):
            if not content_text(prompt.content).strip():
                raise ValueError(f"prompt {i} is empty")
        return prompts

    @model_validator(mode="after")
    def _one_source(self) -> "SyntheticDataGenerationRequest":
        if bool(self.prompts) == bool(self.dataset_id):
            raise ValueError("give `prompts` (at least one) or `dataset_id`, not both")
        check_count(len(self.prompts) * self.num_generations, "max_prompts", "generations (prompts x num_generations)")
        return self


class SyntheticDataGenerationResponse(ApiModel):
    synthetic_data: list[KScoredPromptGenerations]
    statistics: dict[str, Any] | None = None


class SyntheticDataGeneration(Protocol):
    async def post_generate(self, request: SyntheticDataGenerationRequest) -> SyntheticDataGenerationResponse: ...
