"""Reward scoring API: score (dialog, generation) pairs with a reward model."""

from __future__ import annotations

from typing import Protocol

from pydantic import Field

from llamaray.api.common import ApiModel, Dialog, Message, ModelId


class KPromptGenerations(ApiModel):
    dialog: Dialog
    k_generations: list[Message] = Field(min_length=1)


class ScoredMessage(ApiModel):
    message: Message
    score: float


class KScoredPromptGenerations(ApiModel):
    prompt: Message
    k_scored_generations: list[ScoredMessage]


class RewardScoringRequest(ApiModel):
    prompt_generations: list[KPromptGenerations] = Field(min_length=1)
    model: ModelId


class RewardScoringResponse(ApiModel):
    scored_generations: list[KScoredPromptGenerations]


class RewardScoring(Protocol):
    async def post_score(self, request: RewardScoringRequest) -> RewardScoringResponse: ...
