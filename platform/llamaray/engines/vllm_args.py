"""The one builder of vLLM's engine arguments, environment included, for every engine.

Chat and reward models, in a Serve replica (`AsyncLLM`, engine core in its own process) or in a
batch actor (`LLMEngine` in-process), all start from the same `ModelConfig`: the sharding
(tensor and pipeline parallel, with Ray's executor on GPUs so a replica's placement group
holds the shards), the context, the dtype and the engine's environment are read here once.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from llamaray.config import ModelConfig

Runner = Literal["generate", "pooling"]


def set_engine_environment(model: ModelConfig, in_process: bool = False) -> None:
    """vLLM reads these when it starts: the model's `engine_env()` (ENV.md's CPU settings and
    the config's own), and for an in-process engine no engine-core process of its own."""
    for key, value in model.engine_env().items():
        os.environ.setdefault(key, value)
    if in_process:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


def vllm_engine_args(model: ModelConfig, runner: Runner = "generate", in_process: bool = False) -> dict[str, Any]:
    """Sets the engine's environment in this process and answers vLLM's engine arguments:
    `AsyncEngineArgs(**args)` for a replica, `vllm.LLM(**args)` for an in-process engine."""
    set_engine_environment(model, in_process)
    args: dict[str, Any] = dict(
        model=model.path,
        served_model_name=model.model_id,
        dtype=model.dtype,
        tensor_parallel_size=model.tensor_parallel_size,
        pipeline_parallel_size=model.pipeline_parallel_size,
        max_model_len=model.max_model_len,
        gpu_memory_utilization=model.gpu_memory_utilization,
        enforce_eager=model.enforce_eager,
    )
    if runner != "generate":
        args["runner"] = runner
    elif model.serves_adapters:
        lora = model.lora
        args.update(
            enable_lora=True,
            max_loras=lora.max_loras,
            max_lora_rank=lora.max_lora_rank,
            max_cpu_loras=lora.max_cpu_loras or lora.max_loras,
        )
    if not in_process:
        args["disable_log_stats"] = False  # a replica's engine exports its metrics
    if model.world_size > 1:
        # GPU: Ray's executor, one worker per bundle of the replica's placement group. CPU: the
        # multiprocess executor (vLLM's CPU platform has no Ray executor; inside a placement
        # group vLLM would otherwise pick Ray), workers beside the replica, one core each.
        args["distributed_executor_backend"] = "ray" if model.accelerator == "gpu" else "mp"
    # response_format and forced tool calls: compact JSON (vLLM sets it per engine, not per
    # request); with free whitespace a small model spent its max_tokens on "\r\r\r..." mid-object.
    # guidance (llguidance) takes the widest JSON Schema. `engine_kwargs` may say otherwise.
    if runner == "generate":
        args["structured_outputs_config"] = {"backend": "guidance", "disable_any_whitespace": True}
    args.update(model.engine_kwargs)
    if isinstance(args.get("structured_outputs_config"), dict):  # vLLM's EngineArgs takes only its class here
        from vllm.config import StructuredOutputsConfig

        args["structured_outputs_config"] = StructuredOutputsConfig(**args["structured_outputs_config"])
    return args
