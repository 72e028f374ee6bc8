"""Synthetic data generation route (API.md), and data jobs (extensions): batch completion
submitted as a job, the jobs' list, status, logs and cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llamaray.api.data_jobs import BatchJobRequest, DataJobStatusResponse
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest, SyntheticDataGenerationResponse
from llamaray.serve.routers.deps import Services, services

router = APIRouter(tags=["synthetic_data_generation"])


@router.post("/synthetic_data_generation/generate", response_model=SyntheticDataGenerationResponse)
async def generate(request: SyntheticDataGenerationRequest, s: Services = Depends(services)):
    return await s.synthetic_data.post_generate(request)


@router.post("/data_jobs/batch", response_model=DataJobStatusResponse)
async def submit_batch_job(request: BatchJobRequest, s: Services = Depends(services)):
    """The job's status at once (`scheduled`); its output is the dataset `output_dataset_id`."""
    return await s.data_jobs.submit_batch_job(request)


@router.get("/data_jobs/list", response_model=list[DataJobStatusResponse])
async def list_data_jobs(s: Services = Depends(services)):
    return await s.data_jobs.list_data_jobs()


@router.get("/data_jobs/status", response_model=DataJobStatusResponse)
async def data_job_status(job_uuid: str, s: Services = Depends(services)):
    return await s.data_jobs.get_data_job_status(job_uuid)


@router.post("/data_jobs/cancel", response_model=None)
async def cancel_data_job(job_uuid: str, s: Services = Depends(services)) -> None:
    await s.data_jobs.cancel_data_job(job_uuid)


@router.get("/data_jobs/logs", response_model=list[str])
async def data_job_logs(job_uuid: str, s: Services = Depends(services)):
    return await s.data_jobs.get_data_job_logs(job_uuid)
