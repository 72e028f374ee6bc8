"""Reward scoring route (API.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llamaray.api.reward_scoring import RewardScoringRequest, RewardScoringResponse
from llamaray.serve.routers.deps import Services, services

router = APIRouter(prefix="/reward_scoring", tags=["reward_scoring"])


@router.post("/score", response_model=RewardScoringResponse)
async def score(request: RewardScoringRequest, s: Services = Depends(services)):
    return await s.reward_scoring.post_score(request)
