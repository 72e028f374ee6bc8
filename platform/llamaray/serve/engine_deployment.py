"""One model's engine deployment: `LLMServer` for a chat model, `PoolingModelServer` for a reward
model or a classifier, with its resources, placement group and autoscaling read from its config. The platform's
application binds one per configured model; a fine-tuned model gets one of its own later."""

from __future__ import annotations

import re
from typing import Any

from ray import serve
from ray.serve import Application

from llamaray.config import ModelConfig
from llamaray.engines.pooling import PoolingEngine
from llamaray.engines.vllm_engine import VLLMEngine
from llamaray.serve.llm_server import LLMServer
from llamaray.serve.pooling_server import PoolingModelServer

# Deployments are named by what they serve, as the dashboard shows them.
DEPLOYMENT_PREFIX = {"chat": "LLMServer", "reward": "RewardModelServer", "classifier": "ClassifierServer"}


def deployment_name(model: ModelConfig) -> str:
    server = DEPLOYMENT_PREFIX[model.kind]
    return f"{server}:" + re.sub(r"[^A-Za-z0-9_.-]", "_", model.model_id)


def llm_deployment_options(model: ModelConfig, access_log: bool = False) -> dict[str, Any]:
    """Serve options for one model: resources per replica, placement group and autoscaling.

    A model sharded over N = tensor x pipeline parallel devices reserves a placement group of N
    bundles, and the replica sits in the first. On GPUs, vLLM's Ray executor puts one worker in
    each bundle (STRICT_PACK keeps tensor-parallel shards on one node; PACK lets pipeline stages
    spread). On CPU, vLLM's multiprocess executor starts the N workers beside the replica, one
    core each, so the N CPU bundles must be on the replica's node: STRICT_PACK.
    """
    actor_options: dict[str, Any] = {"runtime_env": {"env_vars": model.engine_env()}}
    options: dict[str, Any] = {
        "name": deployment_name(model),
        "max_ongoing_requests": model.max_ongoing_requests,
        "max_queued_requests": model.max_queued_requests,
        "autoscaling_config": model.autoscaling_config.model_dump(exclude_none=True),
        "health_check_period_s": 10,
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 5,
        "logging_config": {"enable_access_log": access_log},
    }
    if model.accelerator == "gpu" and model.world_size > 1:
        bundles = [{"CPU": model.num_cpus, "GPU": 1}] + [{"GPU": 1} for _ in range(model.world_size - 1)]
        options["placement_group_bundles"] = bundles
        options["placement_group_strategy"] = "STRICT_PACK" if model.pipeline_parallel_size == 1 else "PACK"
        actor_options.update(num_cpus=model.num_cpus, num_gpus=0)
    elif model.accelerator == "gpu":
        actor_options.update(num_cpus=model.num_cpus, num_gpus=1)
    elif model.world_size > 1:
        options["placement_group_bundles"] = [{"CPU": model.num_cpus} for _ in range(model.world_size)]
        options["placement_group_strategy"] = "STRICT_PACK"
        actor_options.update(num_cpus=model.num_cpus)
    else:
        actor_options.update(num_cpus=model.num_cpus)
    options["ray_actor_options"] = actor_options
    return options


def engine_deployment(model: ModelConfig, access_log: bool = False) -> Application:
    """A model's deployment, bound to the engine class that serves its kind."""
    server, engine_class = (PoolingModelServer, PoolingEngine) if model.pooled else (LLMServer, VLLMEngine)
    options = llm_deployment_options(model, access_log)
    return serve.deployment(server).options(**options).bind(model.model_dump(), engine_class)
