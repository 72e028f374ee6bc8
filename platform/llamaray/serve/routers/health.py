"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from llamaray.serve.routers.deps import Services, services

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    """The gateway answers: the platform is up (engines may still be starting)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(s: Services = Depends(services)) -> JSONResponse:
    """Every model's engine answers and is healthy; 503 otherwise."""
    engines = await s.readiness.engines()
    ok = all(e.get("healthy") for e in engines)
    return JSONResponse({"status": "ready" if ok else "unavailable", "engines": engines}, 200 if ok else 503)
