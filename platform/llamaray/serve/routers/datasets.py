"""Datasets routes (API.md): create with a JSON body, get and delete by `dataset_id` query."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llamaray.api.datasets import CreateDatasetRequest, Dataset
from llamaray.serve.routers.deps import Services, services

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post("/create", response_model=None)
async def create_dataset(request: CreateDatasetRequest, s: Services = Depends(services)) -> None:
    await s.datasets.create_dataset(request)


@router.get("/get", response_model=Dataset)
async def get_dataset(dataset_id: str, s: Services = Depends(services)):
    return await s.datasets.get_dataset(dataset_id)


@router.delete("/delete", response_model=None)
async def delete_dataset(dataset_id: str, s: Services = Depends(services)) -> None:
    await s.datasets.delete_dataset(dataset_id)
