"""The one builder of vLLM's engine arguments: every engine, reward engines included, gets the
same sharding, context and environment from a model's config."""

from __future__ import annotations

import os

import pytest

from llamaray.config import ModelConfig
from llamaray.engines.vllm_args import vllm_engine_args


@pytest.fixture(autouse=True)
def clean_environment():
    """The builder sets the engine's environment in this process: put this process's back."""
    saved = dict(os.environ)
    for key in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE", "MY_ENGINE_FLAG"):
        os.environ.pop(key, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def sharded(**fields) -> ModelConfig:
    return ModelConfig(
        model_id="m", path="/w", accelerator="gpu", tensor_parallel_size=2, pipeline_parallel_size=2, **fields
    )


@pytest.mark.parametrize("runner", ["generate", "pooling"])
def test_a_sharded_gpu_model_gets_both_parallelisms_and_the_ray_executor(runner):
    args = vllm_engine_args(sharded(kind="reward" if runner == "pooling" else "chat"), runner)
    assert args["tensor_parallel_size"] == 2 and args["pipeline_parallel_size"] == 2
    assert args["distributed_executor_backend"] == "ray"
    assert args.get("runner") == (None if runner == "generate" else "pooling")


def test_a_replica_exports_stats_and_an_in_process_engine_runs_its_core_here():
    model = ModelConfig(model_id="m", path="/w", env={"MY_ENGINE_FLAG": "1"})
    replica = vllm_engine_args(model)
    assert replica["disable_log_stats"] is False and "distributed_executor_backend" not in replica
    assert os.environ["MY_ENGINE_FLAG"] == "1" and os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"
    in_process = vllm_engine_args(model, in_process=True)
    assert "disable_log_stats" not in in_process
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_the_config_s_own_engine_kwargs_win():
    args = vllm_engine_args(
        ModelConfig(model_id="m", path="/w", max_model_len=512, engine_kwargs={"max_model_len": 256})
    )
    assert args["max_model_len"] == 256 and args["served_model_name"] == "m"


def test_a_sharded_cpu_model_runs_vllm_s_multiprocess_executor():
    """Inside the replica's placement group vLLM would pick Ray, which its CPU platform lacks."""
    args = vllm_engine_args(ModelConfig(model_id="m", path="/w", pipeline_parallel_size=2, lora={"max_loras": 0}))
    assert args["distributed_executor_backend"] == "mp" and args["pipeline_parallel_size"] == 2


def test_a_chat_model_serves_adapters_with_its_lora_settings_and_a_reward_model_none():
    chat = vllm_engine_args(ModelConfig(model_id="m", path="/w", lora={"max_loras": 2, "max_lora_rank": 32}))
    assert chat["enable_lora"] is True and chat["max_loras"] == 2 and chat["max_lora_rank"] == 32
    assert chat["max_cpu_loras"] == 2
    assert "enable_lora" not in vllm_engine_args(ModelConfig(model_id="m", path="/w", lora={"max_loras": 0}))
    assert "enable_lora" not in vllm_engine_args(ModelConfig(model_id="r", path="/w", kind="reward"), "pooling")


def test_a_batch_jobs_engines_load_lora_only_for_its_adapter():
    """vLLM's LoRA layers wrap every linear layer, used or not: a job without an adapter runs
    without them (about a third of the batch benchmark's generation time on the tiny model)."""
    from llamaray.engines.protocol import AdapterRef
    from llamaray.pipelines.pipeline import engine_model

    served = ModelConfig(model_id="m", path="/w", lora={"max_loras": 4, "max_cpu_loras": 8})
    assert "enable_lora" not in vllm_engine_args(engine_model(served, None))
    with_adapter = vllm_engine_args(engine_model(served, AdapterRef("a", "/a", 7)))
    assert (with_adapter["enable_lora"], with_adapter["max_loras"], with_adapter["max_cpu_loras"]) == (True, 1, 1)
