"""PostTraining routes (API.md): jobs start with a JSON body and are read by `job_uuid` query."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from llamaray.api.post_training import (
    PostTrainingJobArtifactsResponse,
    PostTrainingJobLogStream,
    PostTrainingJobStatusResponse,
    PostTrainingRLHFRequest,
    PostTrainingSFTRequest,
)
from llamaray.serve.routers.deps import Services, services
from llamaray.serve.sse import sse_response

router = APIRouter(prefix="/post_training", tags=["post_training"])


@router.post("/supervised_fine_tune/", response_model=None)
@router.post("/supervised_fine_tune", response_model=None, include_in_schema=False)
async def supervised_fine_tune(request: PostTrainingSFTRequest, s: Services = Depends(services)) -> None:
    await s.post_training.post_supervised_fine_tune(request)


@router.post("/preference_optimize/", response_model=None)
@router.post("/preference_optimize", response_model=None, include_in_schema=False)
async def preference_optimize(request: PostTrainingRLHFRequest, s: Services = Depends(services)) -> None:
    await s.post_training.post_preference_optimize(request)


@router.get("/job/logs", response_model=PostTrainingJobLogStream)
async def job_logs(job_uuid: str, request: Request, s: Services = Depends(services)):
    """The job's log; with `Accept: text/event-stream`, followed live until the job ends."""
    if "text/event-stream" in request.headers.get("accept", ""):
        return await sse_response(await s.post_training.follow_training_job_logs(job_uuid))
    return await s.post_training.get_training_job_logstream(job_uuid)


@router.get("/job/status", response_model=PostTrainingJobStatusResponse)
async def job_status(job_uuid: str, s: Services = Depends(services)):
    return await s.post_training.get_training_job_status(job_uuid)


@router.get("/jobs", response_model=list[PostTrainingJobStatusResponse])
async def jobs(s: Services = Depends(services)):
    """Every job the tracker knows, oldest first (an extension of the draft)."""
    return await s.post_training.list_training_jobs()


@router.post("/job/cancel", response_model=None)
async def job_cancel(job_uuid: str, s: Services = Depends(services)) -> None:
    await s.post_training.cancel_training_job(job_uuid)


@router.get("/job/plot", response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def job_plot(job_uuid: str, s: Services = Depends(services)) -> Response:
    """The job's curves so far (loss, validation loss, learning rate), redrawn on each call."""
    return Response(await s.post_training.get_training_job_plot(job_uuid), media_type="image/png")


@router.get("/job/artifacts", response_model=PostTrainingJobArtifactsResponse)
async def job_artifacts(job_uuid: str, s: Services = Depends(services)):
    return await s.post_training.get_training_job_artifacts(job_uuid)
