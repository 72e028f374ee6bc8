"""The one place where a Llama Stack post-training request becomes TRL, peft and DeepSpeed settings.

| request field                                | drives                                                         |
|----------------------------------------------|----------------------------------------------------------------|
| algorithm `lora`                             | peft `LoraConfig`                                              |
| algorithm `dora`                             | peft `LoraConfig(use_dora=True)`                               |
| algorithm `qlora`                            | `LoraConfig` over a base loaded in nf4 by bitsandbytes         |
| algorithm `full`                             | no peft: every weight trains (algorithm_config is ignored)     |
| `lora_attn_modules`                          | `target_modules` (torchtune's `output_proj` = HF `o_proj`)     |
| `apply_lora_to_mlp`                          | adds `gate_proj`, `up_proj`, `down_proj`                       |
| `apply_lora_to_output`                       | adds `lm_head`                                                 |
| `rank`, `alpha`                              | `r`, `lora_alpha`                                              |
| `optimizer_type` adam / adamw / sgd          | `torch.optim.Adam` / `AdamW` / `SGD`                           |
| `lr`, `weight_decay`                         | `learning_rate`, `weight_decay` (decoupled for adamw only)     |
| `lr_min`                                     | cosine schedule to `lr_min` (`cosine_with_min_lr`); 0 = cosine |
| `n_epochs`, `n_iters`                        | `num_train_epochs`; `max_steps` when `n_iters` > 0             |
| `batch_size`                                 | `per_device_train_batch_size` (per Ray Train worker)           |
| `shuffle`                                    | `train_sampling_strategy` random / sequential                  |
| `enable_activation_checkpointing`            | `gradient_checkpointing`                                       |
| `memory_efficient_fsdp_wrap`                 | DeepSpeed ZeRO stage 3 (parameters sharded)                    |
| `fsdp_cpu_offload`                           | ZeRO optimizer offload to CPU (and parameters, at stage 3)     |
| neither                                      | full fine-tuning on 2+ workers: ZeRO-2; else no DeepSpeed      |
| DPO `reward_scale`                           | `beta`, the scale of the implicit reward                       |
| DPO `epsilon`                                | `label_smoothing` (conservative DPO), 0 to 0.5                 |
| DPO `gamma`                                  | weight of an SFT (NLL) term on the chosen answer; 0 = none     |
| DPO `reward_clip`                            | nothing in TRL: reported back as not applied                   |
| `logger_config.log_every_n_steps`            | `logging_steps`                                                |
| `logger_config.eval_every_n_steps`           | `eval_strategy="steps"`, `eval_steps` (and always at the end)  |
| `logger_config.eval_every_epoch`             | `eval_strategy="epoch"`                                        |
| `logger_config.report_to`                    | TRL's `report_to`: `tensorboard` (event files among the job's  |
|                                              | artifacts), `mlflow` (a file store among them, or              |
|                                              | `mlflow_tracking_uri`), `wandb` (needs `WANDB_API_KEY` or      |
|                                              | `WANDB_MODE=offline` where Ray runs; `wandb_project`)          |
| other `logger_config`, `hyperparam_search_config` keys | reported back as not applied                         |

DPO trains a LoRA adapter (rank 8 on every attention and MLP projection) over the model it is
given, with the adapter switched off as the reference model; given a finished job's adapter it
keeps training that adapter. Bad values are 4xx errors that name the field.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal, Union

from pydantic import BaseModel, Field

from llamaray.api.post_training import (
    FinetuningAlgorithm,
    LoraFinetuningConfig,
    OptimizerConfig,
    PostTrainingRLHFRequest,
    PostTrainingSFTRequest,
    TrainingConfig,
)
from llamaray.config import PlatformConfig
from llamaray.errors import InvalidRequestError
from llamaray.store.storage import SharedStorage
from llamaray.training.models import BaseWeights

TrainingRequest = Union[PostTrainingSFTRequest, PostTrainingRLHFRequest]

MLP_MODULES = ["gate_proj", "up_proj", "down_proj"]
TORCHTUNE_NAMES = {"output_proj": "o_proj", "w1": "gate_proj", "w2": "down_proj", "w3": "up_proj"}
DPO_LORA = {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "lora_dropout": 0.0, "task_type": "CAUSAL_LM"}
SUPPORTED_LOGGER_KEYS = {
    "log_every_n_steps",
    "eval_every_n_steps",
    "eval_every_epoch",
    "report_to",
    "mlflow_tracking_uri",
    "wandb_project",
}
TRACKERS = ("tensorboard", "mlflow", "wandb")


class Workers(BaseModel):
    num_workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def threads(self) -> int:
        """Torch and OpenMP threads per worker: a fractional CPU still gets its whole core
        (`int(1.5)` ran a worker on one thread of the two cores it shared)."""
        return max(1, math.ceil(self.cpus_per_worker))


class TrainingPlan(BaseModel):
    """Everything a worker needs, JSON-serialisable so it travels to Ray Train workers as is."""

    job_uuid: str
    kind: Literal["sft", "dpo"]
    algorithm: str
    model_path: str
    adapter_path: str | None = None
    peft: dict[str, Any] | None = None
    load_in_4bit: bool = False
    optimizer: Literal["adam", "adamw", "sgd"]
    trainer_args: dict[str, Any]
    deepspeed: dict[str, Any] | None = None  # None: plain PyTorch (one process, or DDP)
    workers: Workers
    checkpoint_dir: str  # where this node writes checkpoints (the shared path, or its staging dir)
    # Shared storage (`llamaray.store.storage`): what the workers publish checkpoints and the
    # trainer's state to, with the token the driver wrote there (a worker that cannot read it
    # is on another disk, and the job fails saying so).
    storage_path: str
    data_dir: str
    storage_token: str = ""
    checkpoint_every_n_steps: int = 0
    max_failures: int = 0
    # The trackers' settings (TRL's integrations read them from the environment), set on rank 0.
    tracker_env: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def strategy(self) -> str:
        """How the workers share the work, as the job's resources and log say it."""
        if self.deepspeed is not None:
            return f"DeepSpeed ZeRO-{self.deepspeed['zero_optimization']['stage']}"
        return "DDP" if self.workers.num_workers > 1 else "one process"


def build_plan(
    kind: Literal["sft", "dpo"],
    request: TrainingRequest,
    base: BaseWeights,
    modules: set[str],
    platform: PlatformConfig,
) -> TrainingPlan:
    storage = SharedStorage.of_platform(platform)
    workers = _workers(request, platform)
    warnings = _unapplied(request)
    args = _trainer_args(request.optimizer_config, request.training_config, platform, workers, request.logger_config)
    plan = dict(
        job_uuid=request.job_uuid,
        kind=kind,
        model_path=base.model_path,
        adapter_path=base.adapter_path,
        optimizer=request.optimizer_config.optimizer_type.value,
        workers=workers,
        checkpoint_dir=str(storage.workdir("jobs", request.job_uuid, "checkpoints")),
        storage_path=platform.storage_path or platform.data_dir,
        data_dir=platform.data_dir,
        checkpoint_every_n_steps=platform.training.checkpoint_every_n_steps,
        max_failures=platform.training.max_failures,
        tracker_env=tracker_env(request, storage),
    )
    if kind == "sft":
        assert isinstance(request, PostTrainingSFTRequest)
        algorithm = request.algorithm
        peft = (
            None if algorithm is FinetuningAlgorithm.full else lora_config(request.algorithm_config, algorithm, modules)
        )
        if algorithm is FinetuningAlgorithm.full:
            warnings.append("algorithm_config: not used by full fine-tuning")
        args.update(completion_only_loss=True)
        return TrainingPlan(
            algorithm=algorithm.value,
            peft=peft,
            deepspeed=deepspeed_config(request.training_config, workers, adapters_only=peft is not None),
            load_in_4bit=algorithm is FinetuningAlgorithm.qlora,
            trainer_args=args,
            warnings=warnings,
            **plan,
        )
    assert isinstance(request, PostTrainingRLHFRequest)
    dpo = request.algorithm_config
    if dpo.reward_scale <= 0:
        raise InvalidRequestError("reward_scale (DPO's beta) must be above 0", "algorithm_config.reward_scale")
    if not 0 <= dpo.epsilon <= 0.5:
        raise InvalidRequestError("epsilon (label smoothing) must be between 0 and 0.5", "algorithm_config.epsilon")
    if dpo.gamma < 0:
        raise InvalidRequestError("gamma (the weight of the SFT term) must be 0 or more", "algorithm_config.gamma")
    warnings.append(
        f"algorithm_config.reward_clip={dpo.reward_clip}: TRL's DPO loss has no reward clipping; not applied"
    )
    losses = ["sigmoid", "sft"] if dpo.gamma > 0 else ["sigmoid"]
    args.update(
        beta=dpo.reward_scale,
        label_smoothing=dpo.epsilon,
        loss_type=losses,
        loss_weights=[1.0, dpo.gamma] if dpo.gamma > 0 else None,
    )
    peft = None if base.adapter_path else dict(DPO_LORA)
    return TrainingPlan(
        algorithm=request.algorithm.value,
        peft=peft,
        deepspeed=deepspeed_config(request.training_config, workers, adapters_only=True),  # DPO trains an adapter
        trainer_args=args,
        warnings=warnings,
        **plan,
    )


def lora_config(config: LoraFinetuningConfig, algorithm: FinetuningAlgorithm, modules: set[str]) -> dict[str, Any]:
    targets = [TORCHTUNE_NAMES.get(name, name) for name in config.lora_attn_modules]
    if config.apply_lora_to_mlp:
        targets += MLP_MODULES
    if config.apply_lora_to_output:
        targets.append("lm_head")
    if not targets:
        raise InvalidRequestError(
            "no module to adapt: name lora_attn_modules or set apply_lora_to_mlp", "algorithm_config.lora_attn_modules"
        )
    unknown = sorted(set(targets) - modules)
    if unknown:
        raise InvalidRequestError(
            f"the model has no modules named {', '.join(unknown)}; "
            f"the layers it can adapt are {', '.join(sorted(modules))}",
            "algorithm_config.lora_attn_modules",
        )
    return {
        "r": config.rank,
        "lora_alpha": config.alpha,
        "target_modules": sorted(set(targets)),
        "lora_dropout": 0.0,
        "use_dora": algorithm is FinetuningAlgorithm.dora,
        "task_type": "CAUSAL_LM",
    }


def deepspeed_config(training: TrainingConfig, workers: Workers, adapters_only: bool) -> dict[str, Any] | None:
    """ZeRO from the draft's FSDP flags, or None where DeepSpeed has nothing to give: one worker
    has nothing to shard, and an adapter's gradients and optimizer state are small enough to
    replicate, so DDP's one all-reduce does (and its start-up is shorter: no DeepSpeed engine).
    Full fine-tuning on two or more workers shards its optimizer (ZeRO-2) unless asked for more.
    The optimizer stays PyTorch's (ENV.md: DeepSpeed's own CPU Adam is a 70 s JIT build), which
    ZeRO accepts with `zero_allow_untested_optimizer`."""
    asked = training.memory_efficient_fsdp_wrap or training.fsdp_cpu_offload
    if not asked and (workers.num_workers == 1 or adapters_only):
        return None
    use_gpu = workers.use_gpu
    stage = 3 if training.memory_efficient_fsdp_wrap else 2
    zero: dict[str, Any] = {"stage": stage}
    if training.fsdp_cpu_offload:
        zero["offload_optimizer"] = {"device": "cpu"}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # checkpoints hold whole tensors
    return {
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": use_gpu},
        "fp16": {"enabled": False},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


def _trainer_args(
    optimizer: OptimizerConfig,
    training: TrainingConfig,
    platform: PlatformConfig,
    workers: Workers,
    logger: dict[str, Any],
) -> dict[str, Any]:
    if optimizer.lr_min > optimizer.lr:
        raise InvalidRequestError(
            f"lr_min ({optimizer.lr_min}) is above lr ({optimizer.lr})", "optimizer_config.lr_min"
        )
    log_every = _positive(logger, "log_every_n_steps", 1)
    eval_every = _positive(logger, "eval_every_n_steps", 0)
    if eval_every:
        evaluation = {"eval_strategy": "steps", "eval_steps": eval_every}
    elif logger.get("eval_every_epoch"):
        evaluation = {"eval_strategy": "epoch"}
    else:
        evaluation = {"eval_strategy": "no"}  # the recipe evaluates once at the end
    checkpointing = training.enable_activation_checkpointing
    return {
        "learning_rate": optimizer.lr,
        "weight_decay": optimizer.weight_decay,
        "lr_scheduler_type": "cosine_with_min_lr" if optimizer.lr_min > 0 else "cosine",
        # As a rate: DeepSpeed's optimizer wrapper has no `defaults` to read an absolute floor from.
        "lr_scheduler_kwargs": {"min_lr_rate": optimizer.lr_min / optimizer.lr} if optimizer.lr_min > 0 else {},
        "num_train_epochs": training.n_epochs,
        "max_steps": training.n_iters if training.n_iters > 0 else -1,
        "per_device_train_batch_size": training.batch_size,
        "per_device_eval_batch_size": training.batch_size,
        "train_sampling_strategy": "random" if training.shuffle else "sequential",
        "gradient_checkpointing": checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
        "max_length": platform.training.max_length,
        "seed": platform.training.seed,
        "use_cpu": not workers.use_gpu,
        "bf16": workers.use_gpu,
        "logging_steps": log_every,
        # The trainer's own state (optimizer, scheduler, RNG, step) where the adapter checkpoints
        # are taken, the latest only: what a restarted worker group resumes from.
        **_resumable_saves(training, platform.training.checkpoint_every_n_steps),
        **evaluation,
        "report_to": _trackers(logger) or "none",
        "disable_tqdm": True,
        "include_num_input_tokens_seen": True,
        "dataloader_num_workers": 0,
    }


def _positive(logger: dict[str, Any], key: str, default: int) -> int:
    value = logger.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key in logger else 0):
        raise InvalidRequestError(f"{key} must be a positive integer", f"logger_config.{key}")
    return value


def _trackers(logger: dict[str, Any]) -> list[str]:
    asked = logger.get("report_to", [])
    asked = [asked] if isinstance(asked, str) else asked
    if not isinstance(asked, list) or any(name not in TRACKERS for name in asked):
        raise InvalidRequestError(
            f"report_to is a list of {', '.join(TRACKERS)}; got {asked!r}", "logger_config.report_to"
        )
    return list(dict.fromkeys(asked))


def tracker_env(request: TrainingRequest, storage: SharedStorage) -> dict[str, str]:
    """Where each tracker the request names writes: TensorBoard's event files and MLflow's file
    store in the job's directory (among its artifacts), W&B where its key says."""
    logger = request.logger_config
    trackers = _trackers(logger)
    env: dict[str, str] = {}
    if "tensorboard" in trackers:
        env["TENSORBOARD_LOGGING_DIR"] = str(storage.workdir("jobs", request.job_uuid, "tensorboard"))
    if "mlflow" in trackers:
        # A tracking server the request names; never a path: a request writes no file outside its job.
        uri = logger.get("mlflow_tracking_uri") or storage.workdir("jobs", request.job_uuid, "mlflow").as_uri()
        if "mlflow_tracking_uri" in logger and (
            not isinstance(uri, str) or not uri.startswith(("http://", "https://", "databricks"))
        ):
            raise InvalidRequestError(
                "mlflow_tracking_uri names a tracking server (http(s)://, databricks); leave it out for a file "
                "store among the job's artifacts",
                "logger_config.mlflow_tracking_uri",
            )
        env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="llamaray", MLFLOW_RUN_NAME=request.job_uuid)
        if uri.startswith("file:"):  # MLflow 3 keeps its file store (no database server) behind this switch
            env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    if "wandb" in trackers:
        if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") not in ("offline", "disabled"):
            raise InvalidRequestError(
                "wandb needs WANDB_API_KEY (or WANDB_MODE=offline) in the environment Ray runs in",
                "logger_config.report_to",
            )
        env.update(
            WANDB_PROJECT=str(logger.get("wandb_project") or "llamaray"),
            WANDB_NAME=request.job_uuid,
            WANDB_DIR=str(storage.workdir("jobs", request.job_uuid)),
        )
    return env


def _resumable_saves(training: TrainingConfig, every_n_steps: int) -> dict[str, Any]:
    if every_n_steps:
        return {"save_strategy": "steps", "save_steps": every_n_steps, "save_total_limit": 1}
    if training.n_iters <= 0:  # epochs bound the run: a checkpoint each
        return {"save_strategy": "epoch", "save_total_limit": 1}
    return {"save_strategy": "no"}  # one checkpoint, at the end: a restart starts over


def _workers(request: TrainingRequest, platform: PlatformConfig) -> Workers:
    defaults = platform.training
    asked = request.resources
    return Workers(
        num_workers=(asked and asked.num_workers) or defaults.num_workers,
        cpus_per_worker=(asked and asked.cpus_per_worker) or defaults.cpus_per_worker,
        gpus_per_worker=asked.gpus_per_worker
        if asked and asked.gpus_per_worker is not None
        else defaults.gpus_per_worker,
    )


def _unapplied(request: TrainingRequest) -> list[str]:
    warnings = [
        f"hyperparam_search_config.{key}: hyperparameter search is not supported; not applied"
        for key in request.hyperparam_search_config
    ]
    asked = request.logger_config.get("report_to", [])
    needs = {"mlflow_tracking_uri": "mlflow", "wandb_project": "wandb"}  # a tracker's setting, without it
    warnings += [
        f"logger_config.{key}: not supported; not applied"
        if key not in SUPPORTED_LOGGER_KEYS
        else f"logger_config.{key}: report_to has no {needs[key]}; not applied"
        for key in request.logger_config
        if key not in SUPPORTED_LOGGER_KEYS or (key in needs and needs[key] not in asked)
    ]
    return warnings
