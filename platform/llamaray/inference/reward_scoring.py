"""The RewardScoring API: every (dialog, generation) pair scored by a served reward model."""

from __future__ import annotations

from llamaray.api.reward_scoring import (
    KScoredPromptGenerations,
    RewardScoringRequest,
    RewardScoringResponse,
    ScoredMessage,
)
from llamaray.inference.chat_format import chat_turns
from llamaray.inference.registry import ModelRegistry


class RewardScoringService:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def post_score(self, request: RewardScoringRequest) -> RewardScoringResponse:
        """One call to the reward model for the whole request, so its engine batches it; the
        answer keeps the request's order of prompts and of generations."""
        reward = self.registry.get(request.model, kind="reward").client
        conversations = [
            chat_turns([*group.dialog.messages(), generation])
            for group in request.prompt_generations
            for generation in group.k_generations
        ]
        scores = iter(await reward.score(conversations))
        return RewardScoringResponse(
            scored_generations=[
                KScoredPromptGenerations(
                    prompt=group.dialog.message,
                    k_scored_generations=[ScoredMessage(message=g, score=next(scores)) for g in group.k_generations],
                )
                for group in request.prompt_generations
            ]
        )
