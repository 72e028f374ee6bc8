"""The request → TRL/peft/DeepSpeed mapping of training/plan.py, one row of its table at a time."""

from __future__ import annotations

import pytest

from llamaray.api.post_training import PostTrainingRLHFRequest, PostTrainingSFTRequest
from llamaray.config import PlatformConfig
from llamaray.errors import InvalidRequestError
from llamaray.training.models import BaseWeights
from llamaray.training.plan import build_plan

MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}
PLATFORM = PlatformConfig.model_validate({"data_dir": "/data", "models": [{"model_id": "m", "path": "/models/m"}]})
DATASET = {"columns": {"dialog": "dialog"}, "content_url": "file:///data/d.jsonl"}


def sft(
    algorithm: str = "lora",
    lora: dict | None = None,
    optimizer: dict | None = None,
    training: dict | None = None,
    **extra,
):
    return PostTrainingSFTRequest.model_validate(
        {
            "job_uuid": "j",
            "model": "m",
            "dataset": DATASET,
            "validation_dataset": DATASET,
            "algorithm": algorithm,
            "algorithm_config": {
                "lora_attn_modules": ["q_proj", "v_proj"],
                "apply_lora_to_mlp": False,
                "apply_lora_to_output": False,
                "rank": 8,
                "alpha": 16,
                **(lora or {}),
            },
            "optimizer_config": {
                "optimizer_type": "adamw",
                "lr": 1e-3,
                "lr_min": 0.0,
                "weight_decay": 0.01,
                **(optimizer or {}),
            },
            "training_config": {
                "n_epochs": 2,
                "batch_size": 4,
                "shuffle": True,
                "n_iters": 0,
                "enable_activation_checkpointing": False,
                "memory_efficient_fsdp_wrap": False,
                "fsdp_cpu_offload": False,
                **(training or {}),
            },
            **extra,
        }
    )


def plan_of(request, kind="sft", base=BaseWeights("/models/m")):
    return build_plan(kind, request, base, MODULES, PLATFORM)


def test_lora_fields_become_peft_settings():
    plan = plan_of(
        sft(
            lora={
                "lora_attn_modules": ["q_proj", "output_proj"],
                "apply_lora_to_mlp": True,
                "apply_lora_to_output": True,
                "rank": 4,
                "alpha": 8,
            }
        )
    )
    assert plan.peft["target_modules"] == sorted(["q_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"])
    assert (plan.peft["r"], plan.peft["lora_alpha"], plan.peft["use_dora"]) == (4, 8, False)
    assert not plan.load_in_4bit


def test_dora_qlora_and_full():
    assert plan_of(sft("dora")).peft["use_dora"] is True
    assert plan_of(sft("qlora")).load_in_4bit is True
    full = plan_of(sft("full"))
    assert full.peft is None and any("algorithm_config" in w for w in full.warnings)


def test_optimizer_schedule_and_loop_settings():
    args = plan_of(
        sft(
            optimizer={"optimizer_type": "sgd", "lr": 0.1, "lr_min": 0.01},
            training={"n_iters": 50, "shuffle": False, "enable_activation_checkpointing": True},
        )
    ).trainer_args
    assert args["learning_rate"] == 0.1 and args["lr_scheduler_type"] == "cosine_with_min_lr"
    assert args["lr_scheduler_kwargs"] == {"min_lr_rate": pytest.approx(0.1)}
    assert args["max_steps"] == 50 and args["train_sampling_strategy"] == "sequential"
    assert args["gradient_checkpointing"] is True and args["per_device_train_batch_size"] == 4
    plain = plan_of(sft())
    assert plain.trainer_args["max_steps"] == -1 and plain.trainer_args["lr_scheduler_type"] == "cosine"
    assert plan_of(sft(optimizer={"optimizer_type": "sgd"})).optimizer == "sgd"


def test_deepspeed_only_where_it_pays():
    """One worker, or adapters (LoRA family, DPO): plain PyTorch (DDP on 2+ workers); full
    fine-tuning on 2+ workers: ZeRO-2; the FSDP flags ask for ZeRO (and offload) anyway."""
    lora = plan_of(sft())
    assert lora.workers.num_workers == 2 and lora.deepspeed is None and lora.strategy == "DDP"
    assert plan_of(sft(resources={"num_workers": 1})).strategy == "one process"
    full = plan_of(sft(algorithm="full", resources={"num_workers": 2}))
    assert full.deepspeed["zero_optimization"] == {"stage": 2} and full.strategy == "DeepSpeed ZeRO-2"
    assert plan_of(sft(algorithm="full", resources={"num_workers": 1})).deepspeed is None
    offload = plan_of(sft(training={"fsdp_cpu_offload": True}, resources={"num_workers": 1}))
    assert offload.deepspeed["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}


def test_a_fractional_cpu_gets_its_whole_core_of_threads():
    assert plan_of(sft(resources={"num_workers": 1, "cpus_per_worker": 1.5})).workers.threads == 2
    assert plan_of(sft(resources={"num_workers": 1, "cpus_per_worker": 0.5})).workers.threads == 1


def test_fsdp_flags_pick_the_zero_stage_and_offload():
    zero3 = plan_of(sft(training={"memory_efficient_fsdp_wrap": True, "fsdp_cpu_offload": True})).deepspeed[
        "zero_optimization"
    ]
    assert (
        zero3["stage"] == 3
        and zero3["offload_param"] == {"device": "cpu"}
        and zero3["offload_optimizer"] == {"device": "cpu"}
    )


def test_workers_come_from_the_request_or_the_deployment():
    assert plan_of(sft()).workers.num_workers == 2
    asked = plan_of(sft(resources={"num_workers": 3, "cpus_per_worker": 2}))
    assert (asked.workers.num_workers, asked.workers.cpus_per_worker) == (3, 2)


def test_unsupported_settings_are_reported_back():
    plan = plan_of(
        sft(hyperparam_search_config={"trials": 4}, logger_config={"log_every_n_steps": 5, "wandb_project": "x"})
    )
    assert plan.trainer_args["logging_steps"] == 5
    assert any("hyperparam_search_config.trials" in w for w in plan.warnings)
    assert any("logger_config.wandb_project" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (lambda: sft(lora={"lora_attn_modules": ["wq"]}), "algorithm_config.lora_attn_modules"),
        (lambda: sft(lora={"lora_attn_modules": []}), "algorithm_config.lora_attn_modules"),
        (lambda: sft(optimizer={"lr_min": 1.0}), "optimizer_config.lr_min"),
        (lambda: sft(logger_config={"log_every_n_steps": 0}), "logger_config.log_every_n_steps"),
    ],
)
def test_impossible_settings_name_their_field(request_, param):
    with pytest.raises(InvalidRequestError) as error:
        plan_of(request_())
    assert error.value.param == param


def dpo(**config):
    return PostTrainingRLHFRequest.model_validate(
        {
            "job_uuid": "d",
            "finetuned_model": "file:///models/m",
            "dataset": DATASET,
            "validation_dataset": DATASET,
            "algorithm": "dpo",
            "algorithm_config": {"reward_scale": 0.1, "reward_clip": 3.0, "epsilon": 0.1, "gamma": 0.5, **config},
            "optimizer_config": {"optimizer_type": "adam", "lr": 1e-3, "lr_min": 0.0, "weight_decay": 0.0},
            "training_config": {
                "n_epochs": 1,
                "batch_size": 2,
                "shuffle": True,
                "n_iters": 0,
                "enable_activation_checkpointing": False,
                "memory_efficient_fsdp_wrap": False,
                "fsdp_cpu_offload": False,
            },
        }
    )


def test_dpo_fields_drive_beta_smoothing_and_the_sft_term():
    plan = plan_of(dpo(), "dpo")
    args = plan.trainer_args
    assert (args["beta"], args["label_smoothing"]) == (0.1, 0.1)
    assert args["loss_type"] == ["sigmoid", "sft"] and args["loss_weights"] == [1.0, 0.5]
    assert any("reward_clip" in w for w in plan.warnings)
    assert plan.peft["target_modules"] == "all-linear"
    assert plan_of(dpo(gamma=0.0), "dpo").trainer_args["loss_type"] == ["sigmoid"]
    assert plan_of(dpo(), "dpo", BaseWeights("/models/m", "/jobs/a/iter-3")).peft is None  # keeps training the adapter


@pytest.mark.parametrize(("field", "value"), [("reward_scale", 0.0), ("epsilon", 0.7), ("gamma", -1.0)])
def test_dpo_refuses_impossible_values(field, value):
    with pytest.raises(InvalidRequestError) as error:
        plan_of(dpo(**{field: value}), "dpo")
    assert error.value.param == f"algorithm_config.{field}"


def test_evaluation_every_n_steps_or_epoch_and_the_trackers(monkeypatch):
    assert plan_of(sft()).trainer_args["eval_strategy"] == "no"  # the recipe evaluates once, at the end
    steps = plan_of(sft(logger_config={"eval_every_n_steps": 5}))
    assert steps.trainer_args["eval_strategy"] == "steps" and steps.trainer_args["eval_steps"] == 5
    assert plan_of(sft(logger_config={"eval_every_epoch": True})).trainer_args["eval_strategy"] == "epoch"

    plan = plan_of(sft(logger_config={"report_to": ["tensorboard", "mlflow"]}))
    assert plan.trainer_args["report_to"] == ["tensorboard", "mlflow"]
    assert plan.tracker_env["TENSORBOARD_LOGGING_DIR"] == "/data/jobs/j/tensorboard"  # among the job's files
    assert plan.tracker_env["MLFLOW_TRACKING_URI"] == "file:///data/jobs/j/mlflow"
    assert plan.tracker_env["MLFLOW_ALLOW_FILE_STORE"] == "true" and plan.tracker_env["MLFLOW_RUN_NAME"] == "j"
    assert plan_of(sft()).trainer_args["report_to"] == "none" and not plan_of(sft()).tracker_env

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(InvalidRequestError) as no_key:
        plan_of(sft(logger_config={"report_to": "wandb"}))
    assert no_key.value.param == "logger_config.report_to" and "WANDB_API_KEY" in no_key.value.message
    monkeypatch.setenv("WANDB_API_KEY", "k")
    wandb = plan_of(sft(logger_config={"report_to": "wandb", "wandb_project": "p"}))
    assert wandb.trainer_args["report_to"] == ["wandb"] and wandb.tracker_env["WANDB_PROJECT"] == "p"


@pytest.mark.parametrize(
    ("logger", "param"),
    [
        ({"eval_every_n_steps": 0}, "logger_config.eval_every_n_steps"),
        ({"eval_every_n_steps": True}, "logger_config.eval_every_n_steps"),
        ({"report_to": ["comet"]}, "logger_config.report_to"),
        ({"report_to": "mlflow", "mlflow_tracking_uri": "file:///etc"}, "logger_config.mlflow_tracking_uri"),
    ],
)
def test_bad_logger_settings_name_their_field(logger, param):
    with pytest.raises(InvalidRequestError) as error:
        plan_of(sft(logger_config=logger))
    assert error.value.param == param


def test_the_curves_are_a_png():
    from llamaray.training.plot import loss_plot

    metrics = [{"step": 1.0, "loss": 2.0, "learning_rate": 1e-3}, {"step": 2.0, "loss": 1.5, "eval_loss": 1.7}]
    assert loss_plot(metrics, "j").startswith(b"\x89PNG") and loss_plot([], "j").startswith(b"\x89PNG")
