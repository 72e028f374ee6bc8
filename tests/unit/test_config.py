"""Deployment configs parse, and map sharding and autoscaling onto Serve's options."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from llamaray.config import ModelConfig, PlatformConfig

ROOT = Path(__file__).resolve().parents[2]


def app_args(name: str) -> dict:
    config = yaml.safe_load((ROOT / "deployments" / name).read_text())
    (app,) = config["applications"]
    assert app["import_path"] == "llamaray.serve.app:build_app"
    return app["args"]


@pytest.mark.parametrize("name", ["local.yaml", "gpu.yaml"])
def test_shipped_configs_validate(name):
    PlatformConfig.model_validate(app_args(name))


def test_gpu_config_maps_draft_ids_and_shards_70b():
    config = PlatformConfig.model_validate(app_args("gpu.yaml"))
    by_alias = {alias: m for m in config.models for alias in m.aliases}
    assert "8B" in by_alias["llama3_8b_chat"].path
    big = by_alias["llama3_70b_chat"]
    assert "70B" in big.path and big.tensor_parallel_size in (4, 8)


def test_sharded_gpu_replica_reserves_one_gpu_bundle_per_shard():
    from llamaray.serve.engine_deployment import llm_deployment_options

    model = ModelConfig(model_id="big", path="x", accelerator="gpu", tensor_parallel_size=4)
    options = llm_deployment_options(model)
    bundles = options["placement_group_bundles"]
    assert len(bundles) == 4 and all(b["GPU"] == 1 for b in bundles)
    assert options["placement_group_strategy"] == "STRICT_PACK"
    assert options["ray_actor_options"]["num_gpus"] == 0


def test_autoscaling_targets_are_explicit():
    from llamaray.serve.engine_deployment import llm_deployment_options

    options = llm_deployment_options(ModelConfig(model_id="m", path="x", max_ongoing_requests=32))
    assert options["max_ongoing_requests"] == 32
    assert options["autoscaling_config"]["target_ongoing_requests"] == 16


def test_cpu_sharding_binds_one_core_per_shard_in_one_placement_group():
    from llamaray.serve.engine_deployment import llm_deployment_options

    model = ModelConfig(model_id="m", path="x", tensor_parallel_size=2)
    assert model.engine_env()["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    options = llm_deployment_options(model)
    assert options["placement_group_bundles"] == [{"CPU": 1}, {"CPU": 1}]
    assert options["placement_group_strategy"] == "STRICT_PACK"
    assert options["ray_actor_options"]["num_cpus"] == 1


def test_duplicate_ids_are_refused():
    with pytest.raises(ValidationError):
        PlatformConfig(models=[ModelConfig(model_id="a", path="x"), ModelConfig(model_id="b", path="y", aliases=["a"])])


def test_pipeline_parallel_on_cpu_refuses_eager_mode_with_the_reason():
    with pytest.raises(ValidationError, match="enforce_eager"):
        ModelConfig(model_id="m", path="x", pipeline_parallel_size=2, enforce_eager=True)
    with pytest.raises(ValidationError, match="max_loras"):
        ModelConfig(model_id="m", path="x", pipeline_parallel_size=2)
    compiled = ModelConfig(model_id="m", path="x", pipeline_parallel_size=2, lora={"max_loras": 0})
    assert compiled.pipeline_parallel_size == 2
    assert ModelConfig(model_id="r", path="x", kind="reward", pipeline_parallel_size=2).world_size == 2


def test_the_cluster_and_its_configs_are_locked_down():
    """Every `ray start` uses Ray's token auth with the dashboard on loopback (reached through a
    tunnel); a config that binds the platform beyond loopback asks for API keys."""
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cluster[key]]
    starts = [c for c in starts if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        assert "RAY_AUTH_MODE=token" in command and "LLAMARAY_API_KEY=" in command
        assert "0.0.0.0" not in command
    assert "--dashboard-host=127.0.0.1" in starts[0]
    assert any("auth_token" in target for target in cluster["file_mounts"])
    for name in ("local.yaml", "gpu.yaml"):
        serve_config = yaml.safe_load((ROOT / "deployments" / name).read_text())
        security = PlatformConfig.model_validate(app_args(name)).security
        assert not security.allow_unauthenticated_remote
        if serve_config["http_options"]["host"] not in ("127.0.0.1", "localhost"):
            assert security.api_keys_env or security.api_keys_file
