"""Extensions of the draft for data jobs: batch completion and synthetic data generation that
run as Ray Jobs over Ray Data and register their output as a dataset.

`POST /synthetic_data_generation/generate` above the inline size (or naming a dataset) answers
at once with the job's uuid in `statistics`; these types are how a user follows that job, and
how `jobs/batch.py` describes a batch over a dataset.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal, Protocol

from pydantic import Field, model_validator
from typing_extensions import Annotated

from llamaray.api.common import ApiModel, Content, Dialog, ModelId, SafeName, SamplingParams, ToolDefinition
from llamaray.api.inference import MaxTokens
from llamaray.api.jobs import JobStatus, JobUUID
from llamaray.api.limits import at_most

OutputFormat = Literal["jsonl", "parquet"]


class DataJobKind(str, Enum):
    sdg = "sdg"
    batch = "batch"


class BatchJobRequest(ApiModel):
    """Completions for every prompt of a request or of a registered dataset, as one job.

    Exactly one source: `content_batch` (completion), `batch_dialogs` (chat completion), or
    `dataset_id`, whose `column` is read as text (completion) or as a dialog (chat).
    """

    job_uuid: JobUUID | None = None
    model: ModelId
    content_batch: Annotated[list[Content], at_most("max_prompts", "prompts")] | None = Field(
        default=None, min_length=1
    )
    batch_dialogs: Annotated[list[Dialog], at_most("max_prompts", "dialogs")] | None = Field(default=None, min_length=1)
    dataset_id: str | None = Field(default=None, min_length=1)
    column: str = "prompt"
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    available_tools: list[ToolDefinition] = Field(default_factory=list)
    max_tokens: int = MaxTokens
    logprobs: bool = False
    output_dataset_id: SafeName | None = None  # default: the job's uuid
    output_format: OutputFormat | None = None  # default: the deployment's `data.output_format`

    @model_validator(mode="after")
    def _one_source(self) -> "BatchJobRequest":
        sources = [name for name in ("content_batch", "batch_dialogs", "dataset_id") if getattr(self, name) is not None]
        if len(sources) != 1:
            raise ValueError(f"give exactly one of content_batch, batch_dialogs, dataset_id (got {sources or 'none'})")
        return self


class DataJobStatusResponse(ApiModel):
    job_uuid: str
    kind: DataJobKind
    status: JobStatus
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output_dataset_id: str | None = None  # registered when, and only when, the job completed
    statistics: dict[str, Any] = Field(default_factory=dict)  # when it completed (SDG: counts, scores, time)
    progress: dict[str, float] | None = None  # the latest of prompts_done, generated_tokens, tokens_per_second
    error: str | None = None


class DataJobs(Protocol):
    async def submit_batch_job(self, request: BatchJobRequest) -> DataJobStatusResponse:
        """Batch completion as a job, answered at once with its status (`POST /data_jobs/batch`;
        an extension: the batch routes wait for their job's end)."""
        ...

    async def list_data_jobs(self) -> list[DataJobStatusResponse]:
        """Every SDG and batch job the caller may see, oldest first (an extension)."""
        ...

    async def get_data_job_status(self, job_uuid: str) -> DataJobStatusResponse: ...

    async def get_data_job_logs(self, job_uuid: str) -> list[str]: ...

    async def cancel_data_job(self, job_uuid: str) -> None: ...
