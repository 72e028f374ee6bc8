"""The Serve application builder that `serve run deployments/<name>.yaml` imports.

`build_app(args)` takes the application's `args` from the Serve config file (or from the file
their `config_file` names, as a KubeRay `RayService` does), validates them as a `PlatformConfig`,
and binds one deployment per model (`LLMServer` for a chat model, `PoolingModelServer` for a
reward model or a classifier; sharding, placement group and autoscaling from the config), the
`EmbeddingServer` and the `MemoryServer` behind the `Gateway`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application

from llamaray.config import PLATFORM_PRIORITY_ENV, PlatformConfig, with_config_file
from llamaray.serve.embedding_server import EmbeddingServer
from llamaray.serve.engine_deployment import engine_deployment, llm_deployment_options
from llamaray.serve.gateway import Gateway
from llamaray.serve.memory_server import MemoryServer

ENV = {"env_vars": PLATFORM_PRIORITY_ENV}  # engines get it with their environment (`engine_env`)
# Requests that may wait for the embedder or the memory server beyond the 64 each runs at once.
SERVICE_QUEUE = 1024


def check_model_paths(config: PlatformConfig) -> None:
    for model in config.models:
        looks_local = model.path.startswith(("/", ".", "~")) or Path(model.path).parts[0] in ("models",)
        if looks_local and not Path(model.path).exists():
            raise FileNotFoundError(
                f"model {model.model_id!r}: no weights at {model.path}; build the tiny models with "
                "`llamaray models build-tiny models` (or `make models`), or point `path` at a checkpoint"
            )


def build_app(args: dict[str, Any]) -> Application:
    config = PlatformConfig.model_validate(with_config_file(args)).resolved()
    check_model_paths(config)
    hosted = config.gateway_model
    engines = {m.model_id: engine_deployment(m, config.access_log) for m in config.models if m is not hosted}
    memory = config.memory
    embedder = (
        serve.deployment(EmbeddingServer)
        .options(
            name="EmbeddingServer",
            autoscaling_config=memory.embedding_autoscaling_config.model_dump(exclude_none=True),
            max_ongoing_requests=64,
            max_queued_requests=SERVICE_QUEUE,
            ray_actor_options={"num_cpus": memory.embedding_num_cpus, "runtime_env": ENV},
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
            max_replicas_per_node=memory.memory_max_replicas_per_node,
            max_ongoing_requests=64,
            max_queued_requests=SERVICE_QUEUE,
            ray_actor_options={"num_cpus": 0, "runtime_env": memory_server_env(memory.embedding_threads)},
            logging_config={"enable_access_log": config.access_log},
        )
        .bind(config.data_dir, config.metadata_url, memory.model_dump(), embedder)
    )
    return Gateway.options(**gateway_options(config)).bind(config.model_dump(), engines, memory_server, embedder)


def memory_server_env(threads: int) -> dict[str, Any]:
    """A query's search gets the threads its embedding has: Ray sets OMP_NUM_THREADS=1 in an actor
    that asks for no CPUs, and Milvus Lite's search in this process (numpy's BLAS under it) then ran
    on one thread: 24.6 ms at 10k chunks against 17 ms with two."""
    return {"env_vars": {**PLATFORM_PRIORITY_ENV, "OMP_NUM_THREADS": str(threads)}}


def gateway_options(config: PlatformConfig) -> dict[str, Any]:
    """The gateway's Serve options; a gateway that hosts a model's engine (`gateway.engine_model`)
    takes that model's resources, placement, engine environment, health check and autoscaling."""
    gateway = config.gateway
    hosted = config.gateway_model
    if hosted is None:
        return {
            "num_replicas": gateway.num_replicas,
            "ray_actor_options": {"num_cpus": gateway.num_cpus, "resources": gateway.resources, "runtime_env": ENV},
            "max_ongoing_requests": gateway.max_ongoing_requests,
            "max_queued_requests": gateway.max_queued_requests,
            "logging_config": {"enable_access_log": config.access_log},
        }
    options = llm_deployment_options(hosted, config.access_log)
    actor = options["ray_actor_options"]
    actor["num_cpus"] = actor.get("num_cpus", 0) + gateway.num_cpus
    actor["resources"] = {**actor.get("resources", {}), **gateway.resources}
    if "placement_group_bundles" in options:  # the replica sits in the first bundle: it must hold both
        first = options["placement_group_bundles"][0]
        first["CPU"] = first.get("CPU", 0) + gateway.num_cpus
        first.update(gateway.resources)
    return {
        **options,
        "name": "Gateway",
        "max_ongoing_requests": gateway.max_ongoing_requests,
        "max_queued_requests": gateway.max_queued_requests,
    }
