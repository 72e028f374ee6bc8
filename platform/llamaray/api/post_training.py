"""Post-training API: supervised fine-tuning and preference optimisation jobs."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, AsyncIterator, Protocol, Union

from pydantic import Field
from typing_extensions import Annotated

from llamaray.api.common import ApiModel, ModelId, StoredURL
from llamaray.api.datasets import Dataset
from llamaray.api.jobs import JobStatus, JobUUID
from llamaray.api.limits import not_above


class OptimizerType(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class OptimizerConfig(ApiModel):
    optimizer_type: OptimizerType
    lr: float = Field(gt=0.0)
    lr_min: float = Field(ge=0.0)
    weight_decay: float = Field(ge=0.0)


class TrainingConfig(ApiModel):
    n_epochs: Annotated[int, not_above("max_epochs")] = Field(ge=1)
    batch_size: Annotated[int, not_above("max_batch_size")] = Field(ge=1)
    shuffle: bool
    n_iters: Annotated[int, not_above("max_iters")] = Field(ge=0)
    enable_activation_checkpointing: bool
    memory_efficient_fsdp_wrap: bool
    fsdp_cpu_offload: bool
    # An extension: SFT on the last assistant turn of each dialog only (default: on every one).
    last_turn_only: bool = False


class FinetuningAlgorithm(str, Enum):
    full = "full"
    lora = "lora"
    qlora = "qlora"
    dora = "dora"


class LoraFinetuningConfig(ApiModel):
    lora_attn_modules: list[str]
    apply_lora_to_mlp: bool
    apply_lora_to_output: bool
    rank: Annotated[int, not_above("max_lora_rank")] = Field(ge=1)
    alpha: int = Field(ge=1, le=1 << 20)


class QLoraFinetuningConfig(LoraFinetuningConfig):
    pass


class DoraFinetuningConfig(LoraFinetuningConfig):
    pass


class RLHFAlgorithm(str, Enum):
    dpo = "dpo"


class DPOAlignmentConfig(ApiModel):
    reward_scale: float
    reward_clip: float
    epsilon: float
    gamma: float


PostTrainingJobStatus = JobStatus  # the draft's name for the status of a post-training job


class Checkpoint(ApiModel):
    iters: int
    path: StoredURL


class PostTrainingJobLogStream(ApiModel):
    job_uuid: str
    log_lines: list[str]


class TrainingResources(ApiModel):
    """An extension of the draft: the Ray Train workers a job gets; unset fields take the
    deployment config's `training` defaults."""

    num_workers: Annotated[int, not_above("max_workers")] | None = Field(default=None, ge=1)
    cpus_per_worker: Annotated[float, not_above("max_cpus_per_worker")] | None = Field(default=None, gt=0)
    gpus_per_worker: Annotated[float, not_above("max_gpus_per_worker")] | None = Field(default=None, ge=0)


class PostTrainingSFTRequest(ApiModel):
    job_uuid: JobUUID
    model: ModelId
    dataset: Dataset
    validation_dataset: Dataset
    algorithm: FinetuningAlgorithm
    algorithm_config: Union[LoraFinetuningConfig, QLoraFinetuningConfig, DoraFinetuningConfig]
    optimizer_config: OptimizerConfig
    training_config: TrainingConfig
    hyperparam_search_config: dict[str, Any] = Field(default_factory=dict)
    logger_config: dict[str, Any] = Field(default_factory=dict)
    resources: TrainingResources | None = None


class PostTrainingRLHFRequest(ApiModel):
    job_uuid: JobUUID
    finetuned_model: StoredURL
    dataset: Dataset
    validation_dataset: Dataset
    algorithm: RLHFAlgorithm
    algorithm_config: DPOAlignmentConfig
    optimizer_config: OptimizerConfig
    training_config: TrainingConfig
    hyperparam_search_config: dict[str, Any] = Field(default_factory=dict)
    logger_config: dict[str, Any] = Field(default_factory=dict)
    resources: TrainingResources | None = None


class PostTrainingJobStatusResponse(ApiModel):
    job_uuid: str
    status: PostTrainingJobStatus
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    resources_allocated: dict[str, Any] | None = None
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    # Extensions of the draft: what a user asks next about a job.
    metrics: list[dict[str, float]] = Field(default_factory=list)  # one entry per logged step
    warnings: list[str] = Field(default_factory=list)  # request settings that were not applied
    error: str | None = None  # why a job failed


class PostTrainingJobArtifactsResponse(ApiModel):
    job_uuid: str
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    # An extension: what else the job wrote, by name: `plot` (its curves, PNG), and the trackers'
    # files `logger_config.report_to` asked for (`tensorboard` event files, an `mlflow` store, `wandb`).
    files: dict[str, str] = Field(default_factory=dict)


class PostTraining(Protocol):
    async def post_supervised_fine_tune(self, request: PostTrainingSFTRequest) -> None: ...

    async def post_preference_optimize(self, request: PostTrainingRLHFRequest) -> None: ...

    async def get_training_job_logstream(self, job_uuid: str) -> PostTrainingJobLogStream: ...

    async def follow_training_job_logs(self, job_uuid: str) -> AsyncIterator[PostTrainingJobLogStream]: ...

    async def get_training_job_status(self, job_uuid: str) -> PostTrainingJobStatusResponse: ...

    async def list_training_jobs(self) -> list[PostTrainingJobStatusResponse]:
        """Every post-training job, oldest first (an extension of the draft)."""
        ...

    async def cancel_training_job(self, job_uuid: str) -> None: ...

    async def get_training_job_artifacts(self, job_uuid: str) -> PostTrainingJobArtifactsResponse: ...

    async def get_training_job_plot(self, job_uuid: str) -> bytes:
        """The job's loss, validation loss and learning rate so far, as a PNG (an extension)."""
        ...
