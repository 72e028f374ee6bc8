"""Deployment configs parse, and map sharding and autoscaling onto Serve's options."""

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from llamaray.config import ModelConfig, PlatformConfig, with_config_file
from llamaray.jobs.driver import standalone_platform

ROOT = Path(__file__).resolve().parents[2]


def app_args(name: str) -> dict:
    config = yaml.safe_load((ROOT / "deployments" / name).read_text())
    (app,) = config["applications"]
    assert app["import_path"] == "llamaray.serve.app:build_app"
    return app["args"]


@pytest.mark.parametrize("name", ["local.yaml", "tiny.yaml", "gpu.yaml"])
def test_shipped_configs_validate(name):
    PlatformConfig.model_validate(app_args(name))


def test_make_serve_answers_with_smollm2_and_serves_what_its_agents_ask():
    """`make serve` (local.yaml) answers with a real model in the gateway's replica; the shields'
    models and the tool-calling agent are served ids, not names that 404 at the first turn."""
    config = PlatformConfig.model_validate(app_args("local.yaml"))
    hosted = config.gateway_model
    assert hosted is not None and hosted.model_id == "smollm2-135m-instruct" and "llama3_8b_chat" in hosted.aliases
    served = {i for m in config.models for i in (m.model_id, *m.aliases, *m.adapters)}
    assert {config.agents.llama_guard_model, config.agents.prompt_guard_model, "tiny-llama-agent"} <= served


@pytest.mark.parametrize("name", ["local.yaml", "tiny.yaml"])
def test_the_local_configs_fit_a_two_core_machine_with_a_training_job(name):
    """Ray counts 2 CPUs on a 2-core laptop: what is always up plus a default training job (or a
    data job's generator and scorer) must fit in them, or the job waits for ever."""
    config = PlatformConfig.model_validate(app_args(name))
    always_up = sum(m.num_cpus * m.autoscaling_config.min_replicas for m in config.models)
    always_up += config.gateway.num_cpus
    always_up += config.memory.embedding_num_cpus * config.memory.embedding_autoscaling_config.min_replicas
    training = config.training.num_workers * config.training.cpus_per_worker
    data_job = config.data.generator_replicas * config.data.generator_num_cpus + config.data.scorer_num_cpus
    assert always_up + max(training, data_job) <= 2


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


def test_a_gateway_that_hosts_the_engine_takes_the_models_replicas_resources_and_environment():
    from llamaray.serve.app import gateway_options

    chat = ModelConfig(model_id="chat", path="x", num_cpus=0.5, tensor_parallel_size=2)
    reward = ModelConfig(model_id="rm", path="y", kind="reward")
    config = PlatformConfig(models=[chat, reward], gateway={"engine_model": "chat", "num_cpus": 0.25})
    assert config.gateway_model.model_id == "chat"
    options = gateway_options(config)
    assert options["name"] == "Gateway" and options["autoscaling_config"] == chat.autoscaling_config.model_dump(
        exclude_none=True
    )
    assert "num_replicas" not in options and options["max_ongoing_requests"] == config.gateway.max_ongoing_requests
    actor = options["ray_actor_options"]
    assert actor["num_cpus"] == 0.75 and actor["runtime_env"]["env_vars"]["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    # The replica sits in the first bundle of the shards' placement group: it holds the gateway's CPU too.
    assert options["placement_group_bundles"] == [{"CPU": 0.75}, {"CPU": 0.5}]
    # Without it, every model in a deployment of its own and the gateway apart, at nice 0 too.
    plain = gateway_options(PlatformConfig(models=[chat]))
    assert plain["num_replicas"] == 1 and plain["ray_actor_options"]["runtime_env"]["env_vars"] == {
        "RAY_worker_niceness": "0"
    }


def test_the_gateways_engine_model_must_be_a_chat_model_of_the_platform():
    reward = ModelConfig(model_id="rm", path="y", kind="reward")
    for named in ("rm", "missing"):
        with pytest.raises(ValidationError, match="gateway.engine_model"):
            PlatformConfig(models=[reward], gateway={"engine_model": named})


def test_the_platforms_processes_run_at_nice_0():
    """Ray starts workers at nice 15; engines, replicas and training workers are the work."""
    from llamaray.serve.runtime import SERVE_ENV
    from llamaray.training.job import WORKER_ENV

    for env in (ModelConfig(model_id="m", path="x").engine_env(), SERVE_ENV, WORKER_ENV):
        assert env["RAY_worker_niceness"] == "0"


def test_the_memory_servers_search_gets_the_embedding_threads():
    """Ray gives an actor that asks for no CPUs OMP_NUM_THREADS=1, which Milvus Lite's in-process
    search then ran on: the memory server names its threads itself."""
    from llamaray.serve.app import memory_server_env

    env = memory_server_env(2)["env_vars"]
    assert env["OMP_NUM_THREADS"] == "2" and env["RAY_worker_niceness"] == "0"


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
    for name in ("local.yaml", "tiny.yaml", "gpu.yaml"):
        serve_config = yaml.safe_load((ROOT / "deployments" / name).read_text())
        security = PlatformConfig.model_validate(app_args(name)).security
        assert not security.allow_unauthenticated_remote
        if serve_config["http_options"]["host"] not in ("127.0.0.1", "localhost"):
            assert security.api_keys_env or security.api_keys_file


def in_image(path: str) -> Path:
    """A path of the KubeRay image (the checkout at /app, deployments/kuberay/Dockerfile) here."""
    assert path.startswith("/app/"), path
    return ROOT / path.removeprefix("/app/")


@pytest.mark.parametrize("name,spec_key", [("rayservice.yaml", "rayClusterConfig"), ("rayjob.yaml", "rayClusterSpec")])
def test_kuberay_manifests_run_ray_with_token_auth(name, spec_key):
    """Every Ray node KubeRay starts runs with Ray's token auth (a Ray that has it), no service
    exposes the dashboard beyond the cluster, and every container gets the platform's API key
    from its secret."""
    manifest = yaml.safe_load((ROOT / "deployments" / "kuberay" / name).read_text())
    cluster = manifest["spec"][spec_key]
    assert cluster["authOptions"]["mode"] == "token"
    assert tuple(int(part) for part in cluster["rayVersion"].split(".")) >= (2, 52, 0)
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    assert cluster["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    for group in groups:
        assert "dashboard-host" not in group["rayStartParams"]
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["LLAMARAY_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "llamaray-api-key"
            assert "RAY_AUTH_MODE" not in env  # KubeRay sets it, with the token it generates


def test_kuberay_manifests_name_the_shipped_deployment_config():
    """The RayService serves gpu.yaml by reference (`config_file`), keys required; the RayJob's
    entrypoint names files the image has."""
    service = yaml.safe_load((ROOT / "deployments" / "kuberay" / "rayservice.yaml").read_text())
    (app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    assert app["import_path"] == "llamaray.serve.app:build_app"
    args = with_config_file({**app["args"], "config_file": str(in_image(app["args"]["config_file"]))})
    assert args == app_args("gpu.yaml")
    assert PlatformConfig.model_validate(args).security.api_keys_env == "LLAMARAY_API_KEY"
    job = yaml.safe_load((ROOT / "deployments" / "kuberay" / "rayjob.yaml").read_text())
    for word in job["spec"]["entrypoint"].split():
        if word.startswith("/app/"):
            assert in_image(word).is_file(), word


def test_a_config_file_is_expanded_with_overrides_on_top(tmp_path):
    args = with_config_file({"config_file": str(ROOT / "deployments" / "local.yaml"), "data_dir": str(tmp_path)})
    assert args["data_dir"] == str(tmp_path) and args["models"] == app_args("local.yaml")["models"]
    platform = standalone_platform({"request": {}}, str(ROOT / "deployments" / "gpu.yaml"))
    assert platform["data_dir"] == "/mnt/llamaray"
    with pytest.raises(SystemExit, match="--platform"):
        standalone_platform({"request": {}})
    bad = tmp_path / "other.yaml"
    bad.write_text("applications: [{name: x, import_path: other:app}]")
    with pytest.raises(ValueError, match="expected one application"):
        with_config_file({"config_file": str(bad)})


def test_every_place_that_starts_ray_sets_the_serve_environment():
    """Serve reads these when Ray starts: `make serve` (through `llamaray serve`, which sets
    `serve_env()`), the cluster launcher and KubeRay must set what the tests run with (a 10 MB
    document crossed a 4 MiB gRPC limit once)."""
    from llamaray.serve.runtime import SERVE_ENV

    assert "$(BIN)/llamaray serve $(CONFIG)" in (ROOT / "Makefile").read_text()
    cli = (ROOT / "platform" / "llamaray" / "cli" / "resources.py").read_text()
    assert "**serve_env()" in cli and '"serve", "run"' in cli
    texts = {name: (ROOT / name).read_text() for name in ("cluster.yaml", "README.md")}
    service = (ROOT / "deployments" / "kuberay" / "rayservice.yaml").read_text()
    for name, value in SERVE_ENV.items():
        for where, text in texts.items():
            assert f"{name}={value}" in text, (where, name)
        assert f"- name: {name}" in service and f'value: "{value}"' in service, name
    for text in (*texts.values(), service):  # HAProxy through the launcher without splice()
        assert "RAY_SERVE_HAPROXY_BINARY_PATH" in text and "llamaray-haproxy" in text


def test_cluster_yaml_passes_ray_launchers_own_schema_and_starts_the_platform():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(cluster))  # what `ray up` checks before it starts a node
    assert any('pip install -e ".[gpu]"' in command for command in cluster["setup_commands"])
    assert "serve deploy deployments/gpu.yaml" in cluster["head_start_ray_commands"][-1]


def closed(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields made errors: Kubernetes prunes them silently,
    so a misspelt field would otherwise pass and do nothing."""
    if isinstance(schema, dict):
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for value in schema:
            closed(value)
    return schema


@pytest.mark.parametrize(
    "name,crd", [("rayservice.yaml", "ray.io_rayservices.yaml"), ("rayjob.yaml", "ray.io_rayjobs.yaml")]
)
def test_kuberay_manifests_pass_kuberays_own_crd_schemas(name, crd):
    """Against the CRDs of KubeRay's repository (`ray-operator/config/crd/bases`), which no package
    ships and the tests may not download: `LLAMARAY_KUBERAY_CRDS` names a directory holding them."""
    import jsonschema

    crds = os.environ.get("LLAMARAY_KUBERAY_CRDS")
    if not crds:
        pytest.skip("LLAMARAY_KUBERAY_CRDS names no directory of KubeRay's CRDs")
    definition = yaml.safe_load((Path(crds) / crd).read_text())
    (v1,) = [version for version in definition["spec"]["versions"] if version["name"] == "v1"]
    schema = closed(v1["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # the API server's, not the CRD's
    manifest = yaml.safe_load((ROOT / "deployments" / "kuberay" / name).read_text())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(manifest)
    ]
    assert not errors, errors
