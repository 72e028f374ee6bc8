"""Platform settings: what the deployment YAML (`deployments/*.yaml`) says, validated.

The Serve config file passes its application `args` to `llamaray.serve.app:build_app`, which
parses them into `PlatformConfig`; the same model is used by the CLI and the tests, so one
schema describes a deployment wherever it is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llamaray.api.limits import LimitSettings

# Ray starts its worker processes at nice 15 (`worker_niceness`), below drivers and everything
# else on the host. The platform's own processes (Serve replicas and the engines they spawn,
# training workers, data-job actors) are the work, not background jobs: they run at nice 0, as
# Ray's job supervisor runs a job's driver, so that a busy host does not starve the serving path.
PLATFORM_PRIORITY_ENV = {"RAY_worker_niceness": "0"}

# What vLLM's CPU build needs on these machines (ENV.md): loopback only, a small KV cache,
# and the in-process executor.
CPU_ENGINE_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "WARNING",
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoscalingConfig(Settings):
    """Serve's `autoscaling_config`; the two request targets are always explicit."""

    model_config = ConfigDict(extra="allow")  # any other Serve autoscaling key passes through

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = None
    target_ongoing_requests: float = Field(default=16, gt=0)
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 60.0
    metrics_interval_s: float | None = None
    look_back_period_s: float | None = None


class LoraSettings(Settings):
    """How a chat model's replicas serve LoRA adapters (vLLM's own LoRA support): each replica
    loads an adapter on its first request and keeps the most recently used ones."""

    max_loras: int = Field(default=4, ge=0)  # adapters in one batch; 0 turns adapter serving off
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] = 16  # the ranks vLLM accepts
    max_cpu_loras: int | None = Field(default=None, ge=1)  # kept loaded per replica; None: max_loras

    @model_validator(mode="after")
    def _checks(self) -> "LoraSettings":
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            raise ValueError("max_cpu_loras must be at least max_loras")
        return self


class ModelConfig(Settings):
    """One model the platform serves, in its own Serve deployment."""

    model_id: str
    path: str  # a local directory or a hub id (hub ids need a machine that can reach the hub)
    # A reward model scores (dialog, generation) pairs; a classifier labels text (a prompt guard).
    kind: Literal["chat", "reward", "classifier"] = "chat"
    # How a reward model or classifier runs: vLLM's pooling runner, or transformers where vLLM
    # lacks the architecture (DeBERTa: Prompt-Guard-86M); `auto` tries vLLM first.
    pooling_backend: Literal["auto", "vllm", "transformers"] = "auto"
    aliases: list[str] = Field(default_factory=list)  # e.g. the draft's `llama3_8b_chat`
    # How a chat model's prompts are written, in serving and in training on it: `llama3` (the
    # Llama 3.1 format, with tools), `chat_template` (the tokenizer's own), `auto` (llama3 for a
    # tokenizer with Llama 3's header tokens, else its chat template). llamaray.inference.prompt_format
    prompt_format: Literal["auto", "llama3", "chat_template"] = "auto"
    accelerator: Literal["cpu", "gpu"] = "cpu"
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = Field(default=None, ge=16)
    dtype: str = "auto"
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    enforce_eager: bool = False
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)  # any other AsyncEngineArgs
    env: dict[str, str] = Field(default_factory=dict)
    num_cpus: float = Field(default=1, ge=0)
    max_ongoing_requests: int = Field(default=64, ge=1)
    # Requests waiting for a replica beyond this are refused at once (503, retry), not queued
    # without end while every replica is busy.
    max_queued_requests: int = Field(default=1024, ge=1)
    # A stream sends what the engine made at most this often (the first token at once):
    # every message crosses two Ray hops, so fewer, fuller ones carry more tokens per second.
    stream_interval_ms: float = Field(default=30, ge=0)
    autoscaling_config: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)  # chat models only
    # LoRA adapters this config serves on the model's replicas, by id: {id: peft directory}.
    # Requests name them like any model (the tiny guard and agent adapters are served this way).
    adapters: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _checks(self) -> "ModelConfig":
        compiled = not self.enforce_eager and not self.serves_adapters  # LoRA turns vLLM's compilation off
        if self.accelerator == "cpu" and self.pipeline_parallel_size > 1 and not compiled:
            # vLLM's CPU build sets up a later pipeline stage's buffers only in its compile warm-up.
            raise ValueError(
                f"model {self.model_id!r}: pipeline_parallel_size > 1 on CPU needs a compiled engine: "
                "enforce_eager: false and (for a chat model) lora: {max_loras: 0}; vLLM's CPU build "
                "prepares later pipeline stages only in its compile warm-up"
            )
        return self

    @property
    def pooled(self) -> bool:
        """Served by a pooling engine (one forward pass, logits out), not by generation."""
        return self.kind in ("reward", "classifier")

    @property
    def serves_adapters(self) -> bool:
        return self.kind == "chat" and self.lora.max_loras > 0

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def ids(self) -> list[str]:
        return [self.model_id, *self.aliases]

    def engine_env(self) -> dict[str, str]:
        env = dict(CPU_ENGINE_ENV) if self.accelerator == "cpu" else {"VLLM_LOGGING_LEVEL": "WARNING"}
        env.update(PLATFORM_PRIORITY_ENV)
        if self.accelerator == "cpu" and self.world_size > 1:
            # One core per CPU worker, or vLLM refuses to start (ENV.md).
            env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(i) for i in range(self.world_size))
            env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")
        env.update(self.env)
        return env


class GatewayConfig(Settings):
    num_replicas: int = Field(default=1, ge=1)
    max_ongoing_requests: int = Field(default=256, ge=1)
    max_queued_requests: int = Field(default=1024, ge=1)
    num_cpus: float = Field(default=0, ge=0)
    # Ray custom resources a gateway replica needs: pins it to nodes that have them (nodes the
    # autoscaler keeps, say), since a request in flight on a gateway that dies is lost.
    resources: dict[str, float] = Field(default_factory=dict)
    # A chat model whose engine runs inside each gateway replica, as `vllm serve` runs its engine
    # behind its own HTTP server: one Python process between the client and the engine, no hop
    # between replicas. The gateway's replicas are then that model's (its resources, engine
    # environment, health check and autoscaling); the other models keep deployments of their own.
    # None: every model in a deployment of its own behind the gateway (many models, scaled apart).
    engine_model: str | None = None


class TrainingSettings(Settings):
    """Defaults for post-training jobs; a request's `resources` overrides the worker fields."""

    num_workers: int = Field(default=2, ge=1)
    cpus_per_worker: float = Field(default=1, gt=0)
    gpus_per_worker: float = Field(default=0, ge=0)
    max_length: int = Field(default=1024, ge=16)  # tokens per training example, longer ones are cut
    checkpoint_every_n_steps: int = Field(default=0, ge=0)  # 0: at the end, and per epoch when n_iters is 0
    # Ray Train's FailureConfig: a worker lost (a node gone, a preemption) restarts the group that
    # many times, and training resumes from the last checkpoint (trainer state included).
    max_failures: int = Field(default=2, ge=0)
    # Ray Train's placement of a job's workers: PACK fills one node first; SPREAD (or
    # STRICT_SPREAD, one worker per node) puts them on different nodes.
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    seed: int = 42


class RetentionSettings(Settings):
    """How long what jobs leave behind is kept (`llamaray.jobs.retention`). An ended job past its
    time goes whole: its record, log, metrics and owner, its directory under the data dir (config,
    checkpoints, trainer state) and Ray Train's run directory."""

    ended_job_days: float | None = Field(default=30, gt=0)  # after the job ended; None: kept
    max_ended_jobs: int | None = Field(default=1000, ge=0)  # beyond this many ended jobs, the oldest go
    # A completed training job's adapter may be served (`/v1/models` lists it): kept however old.
    keep_completed_training_jobs: bool = True
    # Per training job, the latest N checkpoints (Ray Train's `num_to_keep`); None: all of them.
    checkpoints_to_keep: int | None = Field(default=None, ge=1)
    # A data job's output dataset goes with the job (record and file); by default it stays,
    # registered, until `/datasets/delete`, which removes the file the job wrote.
    delete_output_datasets: bool = False
    interval_s: float = Field(default=3600, gt=0)  # how often the tracker looks (and when a job ends)


class MemorySettings(Settings):
    """Memory banks: where Milvus is, which model embeds, how documents are cut."""

    milvus_uri: str | None = None  # None: Milvus Lite in <data_dir>/milvus.db; or a server's URI
    milvus_token: str | None = None
    embedding_model: str = "all-MiniLM-L6-v2"  # from the offline package; or a path / hub id
    embedding_threads: int = Field(default=1, ge=1)  # torch threads per EmbeddingServer replica
    embedding_num_cpus: float = Field(default=0.5, ge=0)  # Ray's logical CPUs per replica
    chunk_size_tokens: int = Field(default=256, ge=16)  # the embedder's tokens; MiniLM reads 256
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    full_text: bool = True  # banks analysed for BM25 unless their create says `full_text=false`
    max_document_bytes: int = Field(default=10_000_000, ge=1)
    max_chunks_per_document: int = Field(default=20_000, ge=1)  # a 10 MB text in 256-token chunks: ~10k
    embedding_autoscaling_config: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    memory_replicas: int = Field(default=1, ge=1)  # more only with a Milvus server
    # Serve's `max_replicas_per_node` for MemoryServer: 1 puts each replica on a node of its own.
    memory_max_replicas_per_node: int | None = Field(default=None, ge=1)
    # A bank's writer holds a lease in the metadata store; a dead one blocks its bank this long.
    write_lease_s: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _checks(self) -> "MemorySettings":
        if self.chunk_overlap_tokens > self.chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must be at most half of chunk_size_tokens")
        if self.memory_replicas > 1 and not self.milvus_uri:
            raise ValueError("Milvus Lite allows one process per file: memory_replicas > 1 needs milvus_uri")
        return self


class DataSettings(Settings):
    """Synthetic data generation and batch completion: when a request runs inline on the Serve
    deployments and when as a Ray Data job, and how big that job's actor pools are."""

    sdg_inline_max_generations: int = Field(default=64, ge=0)  # prompts x k answered inline
    batch_inline_max_prompts: int = Field(default=64, ge=0)  # the batch routes' inline size
    # A batch route above the inline size waits for its job this long, then cancels it (504);
    # a client that leaves cancels it at once. Below Serve's request_timeout_s.
    batch_route_timeout_s: float = Field(default=600, gt=0)
    generator_replicas: int = Field(default=1, ge=1)  # actors that each hold a vLLM engine
    generator_num_cpus: float = Field(default=1, ge=0)
    generator_num_gpus: float = Field(default=0, ge=0)  # per shard (tensor x pipeline parallel)
    batch_size: int = Field(default=64, ge=1)  # rows per map_batches call
    max_concurrent_batches: int = Field(default=8, ge=1)  # batches in one engine at once
    scorer_replicas: int = Field(default=1, ge=1)
    scorer_num_cpus: float = Field(default=0.5, ge=0)
    scorer_num_gpus: float = Field(default=0, ge=0)
    output_format: Literal["jsonl", "parquet"] = "jsonl"


class SandboxSettings(Settings):
    """The code interpreter's sandbox: bubblewrap (no network, a scratch directory, read-only
    system files) under rlimits, run as an unprivileged uid when the platform runs as root."""

    python: str = "/usr/bin/python3"  # the interpreter inside; it must live under /usr
    timeout_s: float = Field(default=10, gt=0)  # wall clock, then the process tree is killed
    cpu_s: int = Field(default=10, ge=1)
    memory_mb: int = Field(default=512, ge=64)  # address space
    max_processes: int = Field(default=16, ge=1)
    max_output_bytes: int = Field(default=64_000, ge=1024)  # stdout + stderr
    max_file_mb: int = Field(default=16, ge=1)  # any one file it writes


class WebSearchSettings(Settings):
    """`web_search` calls Brave's search API (the model knows it as `brave_search`)."""

    api_key: str | None = None  # or the environment variable below, read by the gateway
    api_key_env: str = "BRAVE_SEARCH_API_KEY"
    url: str = "https://api.search.brave.com/res/v1/web/search"
    count: int = Field(default=5, ge=1, le=20)
    timeout_s: float = Field(default=10, gt=0)


class AgentSettings(Settings):
    """The agentic system: how long a turn may run and what its tools and shields use."""

    max_inference_steps: int = Field(default=5, ge=1)  # model calls per turn (tool loop included)
    max_tokens: int = Field(default=512, ge=1)  # per model call
    memory_top_k: int = Field(default=3, ge=1, le=50)  # chunks per turn, over all the agent's banks
    tool_timeout_s: float = Field(default=30, gt=0)  # any built-in tool, the sandbox included
    # What the model reads back from a tool, at most; the middle of a longer answer is cut, so
    # that a flood of output cannot push the next prompt past the model's context.
    max_tool_response_chars: int = Field(default=8000, ge=200)
    # The model a `llama_guard` / `prompt_guard` shield asks when its params name none.
    llama_guard_model: str | None = None
    prompt_guard_model: str | None = None
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    web_search: WebSearchSettings = Field(default_factory=WebSearchSettings)


class OutboundSettings(Settings):
    """What the platform may fetch when a request names a URL (`llamaray.security.outbound`)."""

    allow_http: bool = False  # https only, unless a trusted network serves plain http
    # Loopback, private, link-local (cloud metadata) and other non-public addresses are refused;
    # `allow_private` lifts that for every host (an air-gapped cluster), `allow_hosts` for the
    # hosts (`name` or `name:port`) it lists, e.g. an internal dataset mirror.
    allow_private: bool = False
    allow_hosts: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=256 << 20, ge=1)
    timeout_s: float = Field(default=60, gt=0)  # the whole fetch, redirects included
    max_redirects: int = Field(default=5, ge=0)


class SecuritySettings(Settings):
    """Who may call the platform (`llamaray.security.access`)."""

    # API keys (bearer tokens). Better than listing them here: the environment variable
    # (comma-separated) or a file of one key per line, re-read when it changes.
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str = "LLAMARAY_API_KEY"
    api_keys_file: str | None = None
    # Each key sees and changes only the jobs, banks, datasets, agents and adapters it created;
    # an admin key (also a valid key) sees and changes them all.
    admin_api_keys: list[str] = Field(default_factory=list)
    admin_api_keys_env: str = "LLAMARAY_ADMIN_API_KEY"
    admin_api_keys_file: str | None = None
    # Without keys only loopback clients are served, unless this says otherwise explicitly.
    allow_unauthenticated_remote: bool = False
    # Host header names answered; default: loopback names without keys, any name with keys.
    trusted_hosts: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)  # browser origins allowed (CORS); "*" for any
    docs: bool = True  # /docs, /redoc and /openapi.json, served without a key; false removes them


STORAGE_SCHEMES = ("s3", "gs", "gcs", "file")  # pyarrow's filesystems, as Ray Train reads them


class PlatformConfig(Settings):
    data_dir: str = ".llamaray"
    # The metadata store: None, SQLite in the data dir (one node); a `postgresql://` URL for a
    # cluster, where gateways and drivers on several nodes write at once (SQLite on NFS is unsafe).
    metadata_url: str | None = Field(default=None, pattern=r"^postgres(ql)?://")
    # Where checkpoints, the trainer's state, Ray Train's runs and the datasets jobs write go:
    # None, the data dir (one node); on a cluster a directory every node mounts (NFS) or an
    # object store URI (`s3://bucket/key`, `gs://...`) read through pyarrow (llamaray.store.storage).
    storage_path: str | None = None
    # Directories whose files a dataset's file:// URL may name; the data dir is always one.
    dataset_roots: list[str] = Field(default_factory=list)
    access_log: bool = False  # Serve's per-request log line; it costs throughput on small cores
    models: list[ModelConfig] = Field(min_length=1)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    data: DataSettings = Field(default_factory=DataSettings)
    agents: AgentSettings = Field(default_factory=AgentSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @field_validator("storage_path")
    @classmethod
    def _storage_path(cls, value: str | None) -> str | None:
        scheme = value.split("://", 1)[0].lower() if value and "://" in value else None
        if scheme is not None and scheme not in STORAGE_SCHEMES:
            raise ValueError(f"the scheme of {value!r} is not one of {', '.join(STORAGE_SCHEMES)}")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> "PlatformConfig":
        seen: set[str] = set()
        for model in self.models:
            for model_id in model.ids:
                if model_id in seen:
                    raise ValueError(f"model id {model_id!r} is registered twice")
                seen.add(model_id)
            for adapter_id in model.adapters:
                if adapter_id in seen:
                    raise ValueError(f"model id {adapter_id!r} is registered twice")
                seen.add(adapter_id)
        return self

    @model_validator(mode="after")
    def _gateway_engine_model(self) -> "PlatformConfig":
        hosted = self.gateway.engine_model
        chat = [m.model_id for m in self.models if m.kind == "chat"]
        if hosted is not None and hosted not in chat:
            raise ValueError(f"gateway.engine_model {hosted!r} is not a chat model here (chat models: {chat})")
        return self

    @property
    def gateway_model(self) -> "ModelConfig | None":
        """The chat model whose engine the gateway's replicas host, if any."""
        return next((m for m in self.models if m.model_id == self.gateway.engine_model), None)

    def resolved(self, root: str | Path | None = None) -> "PlatformConfig":
        """Relative paths made absolute, so replicas find them whatever their working dir."""
        base = Path(root or os.environ.get("LLAMARAY_ROOT") or os.getcwd())
        data_dir = str((base / self.data_dir).resolve())
        roots = [data_dir, *(str((base / root).resolve()) for root in self.dataset_roots)]
        models = []
        for model in self.models:
            local = base / model.path
            path = str(local.resolve()) if local.exists() else model.path
            adapters = {name: str((base / p).resolve()) for name, p in model.adapters.items()}
            models.append(model.model_copy(update={"path": path, "adapters": adapters}))
        storage = self.storage_path
        if storage and "://" not in storage:
            storage = str((base / storage).resolve())
        local_storage = storage.removeprefix("file://") if storage and storage.startswith(("/", "file://")) else None
        if local_storage:  # the platform's own files there are readable datasets too
            roots.append(local_storage)
        update = {"data_dir": data_dir, "dataset_roots": roots, "models": models, "storage_path": storage}
        return self.model_copy(update=update)


APP_IMPORT_PATH = "llamaray.serve.app:build_app"


def with_config_file(args: dict[str, Any]) -> dict[str, Any]:
    """`args` with a `config_file` (a Serve config file, e.g. `deployments/gpu.yaml`) expanded:
    the args of its llamaray application, then the other keys of `args` over them. A KubeRay
    `RayService` and a job's `platform:` name the deployment config this way instead of copying it."""
    if "config_file" not in args:
        return args
    rest = {key: value for key, value in args.items() if key != "config_file"}
    path = Path(args["config_file"])
    document = yaml.safe_load(path.read_text()) or {}
    apps = [app for app in document.get("applications") or [] if app.get("import_path") == APP_IMPORT_PATH]
    if len(apps) != 1:
        raise ValueError(f"{path}: expected one application with import_path {APP_IMPORT_PATH}, found {len(apps)}")
    return {**(apps[0].get("args") or {}), **rest}
