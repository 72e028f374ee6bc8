"""Reward scoring API: score (dialog, generation) pairs with a reward model."""

from __future__ import annotations

from typing import Protocol

from pydantic import Field, model_validator
from typing_extensions import Annotated

from llamaray.api.common import ApiModel, Dialog, Message, ModelId
from llamaray.api.limits import at_most, check_count


class KPromptGenerations(ApiModel):
    dialog: Dialog
    k_generations: Annotated[list[Message], at_most("max_prompts", "generations")] = Field(min_length=1)


class ScoredMessage(ApiModel):
    message: Message
    score: float


class KScoredPromptGenerations(ApiModel):
    prompt: Message
    k_scored_generations: list[ScoredMessage]


class RewardScoringRequest(ApiModel):
    prompt_generations: Annotated[list[KPromptGenerations], at_most("max_prompts", "prompts")] = Field(min_length=1)
    model: ModelId

    @model_validator(mode="after")
    def _generations_within_limits(self) -> "RewardScoringRequest":
        count = sum(len(p.k_generations) for p in self.prompt_generations)
        check_count(count, "max_prompts", "generations to score")
        return self


class RewardScoringResponse(ApiModel):
    scored_generations: list[KScoredPromptGenerations]


class RewardScoring(Protocol):
    async def post_score(self, request: RewardScoringRequest) -> RewardScoringResponse: ...
