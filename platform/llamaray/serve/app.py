"""The Serve application builder that `serve run deployments/<name>.yaml` imports.

`build_app(args)` takes the application's `args` from the Serve config file, validates them as
a `PlatformConfig`, and binds one deployment per model (`LLMServer` for a chat model,
`RewardModelServer` for a reward model; sharding, placement group and autoscaling from the
config), the `EmbeddingServer` and the `MemoryServer` behind the `Gateway`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application

from llamaray.config import ModelConfig, PlatformConfig
from llamaray.engines.reward import RewardEngine
from llamaray.engines.vllm_engine import VLLMEngine
from llamaray.serve.embedding_server import EmbeddingServer
from llamaray.serve.gateway import Gateway
from llamaray.serve.llm_server import LLMServer
from llamaray.serve.memory_server import MemoryServer
from llamaray.serve.reward_server import RewardModelServer


def deployment_name(model: ModelConfig) -> str:
    server = "RewardModelServer" if model.kind == "reward" else "LLMServer"
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
        "autoscaling_config": model.autoscaling_config.model_dump(exclude_none=True),
        "health_check_period_s": 10,
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 5,
        "logging_config": {"enable_access_log": access_log},
    }
    if model.accelerator == "gpu" and model.world_size > 1:
        bundles = [{"CPU": model.num_cpus, "GPU": 1}] + [{"GPU": 1}] * (model.world_size - 1)
        options["placement_group_bundles"] = bundles
        options["placement_group_strategy"] = "STRICT_PACK" if model.pipeline_parallel_size == 1 else "PACK"
        actor_options.update(num_cpus=model.num_cpus, num_gpus=0)
    elif model.accelerator == "gpu":
        actor_options.update(num_cpus=model.num_cpus, num_gpus=1)
    elif model.world_size > 1:
        options["placement_group_bundles"] = [{"CPU": model.num_cpus}] * model.world_size
        options["placement_group_strategy"] = "STRICT_PACK"
        actor_options.update(num_cpus=model.num_cpus)
    else:
        actor_options.update(num_cpus=model.num_cpus)
    options["ray_actor_options"] = actor_options
    return options


def check_model_paths(config: PlatformConfig) -> None:
    for model in config.models:
        looks_local = model.path.startswith(("/", ".", "~")) or Path(model.path).parts[0] in ("models",)
        if looks_local and not Path(model.path).exists():
            raise FileNotFoundError(
                f"model {model.model_id!r}: no weights at {model.path}; build the tiny models with "
                "`llamaray models build-tiny models` (or `make models`), or point `path` at a checkpoint"
            )


def engine_deployment(model: ModelConfig, access_log: bool = False) -> Application:
    """A model's deployment, bound to the engine class that serves its kind."""
    server, engine_class = (RewardModelServer, RewardEngine) if model.kind == "reward" else (LLMServer, VLLMEngine)
    options = llm_deployment_options(model, access_log)
    return serve.deployment(server).options(**options).bind(model.model_dump(), engine_class)


def build_app(args: dict[str, Any]) -> Application:
    config = PlatformConfig.model_validate(args).resolved()
    check_model_paths(config)
    engines = {model.model_id: engine_deployment(model, config.access_log) for model in config.models}
    memory = config.memory
    embedder = (
        serve.deployment(EmbeddingServer)
        .options(
            name="EmbeddingServer",
            autoscaling_config=memory.embedding_autoscaling_config.model_dump(exclude_none=True),
            max_ongoing_requests=64,
            ray_actor_options={"num_cpus": memory.embedding_num_cpus},
            logging_config={"enable_access_log": config.access_log},
        )
        .bind(memory.embedding_model, memory.embedding_threads)
    )
    # Milvus Lite allows one process per database file: one replica owns it unless a server is named.
    memory_server = (
        serve.deployment(MemoryServer)
        .options(
            name="MemoryServer",
            num_replicas=memory.memory_replicas,
            max_ongoing_requests=64,
            ray_actor_options={"num_cpus": 0},
            logging_config={"enable_access_log": config.access_log},
        )
        .bind(config.data_dir, memory.model_dump(), embedder)
    )
    gateway = config.gateway
    return Gateway.options(
        num_replicas=gateway.num_replicas,
        max_ongoing_requests=gateway.max_ongoing_requests,
        ray_actor_options={"num_cpus": gateway.num_cpus},
        logging_config={"enable_access_log": config.access_log},
    ).bind(config.model_dump(), engines, memory_server, embedder)
