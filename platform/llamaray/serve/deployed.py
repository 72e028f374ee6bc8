"""Fine-tuned models that are whole weights, served as engine deployments of their own.

A `full` fine-tune is a new checkpoint and a DoRA adapter is one vLLM cannot apply per request
(it is merged into its base weights first), so neither can ride on the base model's replicas as
a LoRA does. When such a job completes, `ModelDeployer` (one detached actor per cluster) deploys
its weights as a Serve application of its own beside the platform's, `<base model id>:<job_uuid>`,
with the base model's engine settings: the models already serving never stop. What it deployed
is recorded in the metadata store, so after a cluster restart the models come back, and
`DELETE /v1/models/{id}` takes one down. The gateway reads the records (`DeployedModels`) to
route to them and to list them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from llamaray.api import openai as oai
from llamaray.api.models import Adapter, Models, RegisterAdapterRequest
from llamaray.config import AutoscalingConfig, ModelConfig, PlatformConfig
from llamaray.errors import EngineUnavailableError, NotFoundError
from llamaray.inference.prompt_format import prompt_format_for
from llamaray.inference.registry import RegisteredModel
from llamaray.serve.clients import ServeEngineClient
from llamaray.serve.engine_deployment import deployment_name, engine_deployment
from llamaray.serve.metrics import GatewayMetrics
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import NODE_CACHE, SharedStorage, local_copy_of

logger = logging.getLogger(__name__)

KIND = "deployed_model"
DEPLOYER = "llamaray_model_deployer"
NAMESPACE = "llamaray"
ALGORITHMS = ("full", "dora")  # what a job trains that is served as a model of its own
POLL_S = 2.0


def app_name(model_id: str) -> str:
    return "llamaray-model-" + re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)


def derived_config(base: ModelConfig, model_id: str, path: str) -> ModelConfig:
    """The base model's engine settings over the fine-tuned weights, one replica to start."""
    return base.model_copy(
        update={
            "model_id": model_id,
            "path": path,
            "aliases": [],
            "autoscaling_config": AutoscalingConfig(min_replicas=1, max_replicas=1),
        }
    )


def _merge(adapter: str, storage_path: str, data_dir: str, job_uuid: str) -> str:
    """The adapter folded into its base, next to the job's checkpoints in the shared storage."""
    from llamaray.training.merge import merge_adapter

    storage = SharedStorage(storage_path, data_dir)
    merged = merge_adapter(str(local_copy_of(adapter, NODE_CACHE)), str(storage.workdir("jobs", job_uuid, "merged")))
    if storage.local:
        return merged
    return storage.with_options(storage.publish(Path(merged), "jobs", job_uuid, "merged"))


class ModelDeployer:
    """Watches the job records and deploys each finished `full` or `dora` job's weights."""

    def __init__(self, platform: dict[str, Any]) -> None:
        from llamaray.jobs.tracker import tracker_actor

        self.platform = PlatformConfig.model_validate(platform)
        self.chat = {m.model_id: m for m in self.platform.models if m.kind == "chat"}
        self.store = MetadataStore.of_platform(self.platform.data_dir, self.platform.metadata_url)
        self.storage = SharedStorage.of_platform(self.platform)
        self.tracker = tracker_actor(platform)
        self.lock = threading.Lock()
        self._mark_down()
        threading.Thread(target=self._watch, name="model-deployer", daemon=True).start()

    def ping(self) -> bool:
        return True

    def _mark_down(self) -> None:
        """After a restart nothing deployed is up yet: routes answer 503 until it is again."""
        from ray import serve

        running = set(serve.status().applications)
        for model_id, record in self.store.list(KIND):
            if record["status"] == "ready" and record["app"] not in running:
                self.store.put(KIND, model_id, {**record, "status": "deploying", "created": int(time.time())})

    def _watch(self) -> None:
        while True:
            try:
                self.reconcile()
            except Exception:  # the next round tries again
                logger.exception("deploying fine-tuned models failed")
            time.sleep(POLL_S)

    def reconcile(self) -> None:
        """Deploys what finished since the last round, and what a restart took down. The lock
        covers the records, not the deploying, so a DELETE never waits for a deployment."""
        import ray
        from ray import serve

        jobs = ray.get(self.tracker.jobs.remote())
        running = set(serve.status().applications)
        with self.lock:
            records = dict(self.store.list(KIND))
            due = [r for r in records.values() if r["status"] in ("ready", "deploying") and r["app"] not in running]
            for job in jobs:
                model_id = self._model_id(job)
                if model_id is not None and model_id not in records:
                    due.append(self._new_record(job, model_id))
            for record in due:
                self.store.put(KIND, record["model_id"], {**record, "status": "deploying"})
        for record in due:
            self._deploy(record)

    def _model_id(self, job: dict[str, Any]) -> str | None:
        base = job.get("base_model")
        if job.get("kind") != "sft" or job.get("algorithm") not in ALGORITHMS or base not in self.chat:
            return None
        if job["status"] != "completed" or not job["checkpoints"]:
            return None
        return f"{base}:{job['job_uuid']}"

    def _new_record(self, job: dict[str, Any], model_id: str) -> dict[str, Any]:
        final = max(job["checkpoints"], key=lambda c: c["iters"])
        return {
            "model_id": model_id,
            "base_model": job["base_model"],
            "job_uuid": job["job_uuid"],
            "algorithm": job["algorithm"],
            "checkpoint": self.storage.with_options(final["path"]).removeprefix("file://"),
            "path": None,
            "app": app_name(model_id),
            "status": "deploying",
            "error": None,
            "created": int(time.time()),
            "deploy_seconds": None,
        }

    def _deploy(self, record: dict[str, Any]) -> None:
        import ray
        from ray import serve

        started = time.monotonic()
        try:
            path = record["checkpoint"]
            self.tracker.log.remote(record["job_uuid"], [f"deploying {record['model_id']!r} as a model of its own"])
            if record["algorithm"] == "dora":
                # The CPUs of one training worker, which the finished job has just given back: a
                # whole CPU may never come free on a small machine, and the deploy would wait for ever.
                where = (self.platform.storage_path or self.platform.data_dir, self.platform.data_dir)
                merge = ray.remote(_merge).options(num_cpus=self.platform.training.cpus_per_worker)
                path = ray.get(merge.remote(path, *where, record["job_uuid"]))
            model = derived_config(self.chat[record["base_model"]], record["model_id"], path)
            serve.run(engine_deployment(model, self.platform.access_log), name=record["app"], route_prefix=None)
            seconds = round(time.monotonic() - started, 1)
            record = {**record, "status": "ready", "path": path, "error": None, "deploy_seconds": seconds}
            line = f"served as model {record['model_id']!r} (Serve application {record['app']}) in {seconds} s"
        except Exception as exc:
            record = {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
            line = f"could not serve {record['model_id']!r}: {record['error']}"
        with self.lock:
            if self.store.get(KIND, record["model_id"])["status"] == "deleted":  # taken down meanwhile
                if record["app"] in serve.status().applications:
                    serve.delete(record["app"], _blocking=False)
                return
            self.store.put(KIND, record["model_id"], record)
        self.tracker.log.remote(record["job_uuid"], [line])

    def remove(self, model_id: str) -> bool:
        """Takes a deployed model down for good; False when there is none by that id."""
        from ray import serve

        with self.lock:
            try:
                record = self.store.get(KIND, model_id)
            except NotFoundError:
                return False
            if record["status"] == "deleted":
                return False
            self.store.put(KIND, model_id, {**record, "status": "deleted"})
        if record["app"] in serve.status().applications:
            serve.delete(record["app"])
        return True


def model_deployer(platform: dict[str, Any]):
    """The cluster's deployer, started on first use."""
    import ray

    actor_class = ray.remote(ModelDeployer).options(
        name=DEPLOYER,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=4,
    )
    return actor_class.remote(platform)


class DeployedModels:
    """The gateway's view of the deployed models (`llamaray.inference.registry.DeployedModels`)."""

    def __init__(self, platform: PlatformConfig, store: MetadataStore, deployer, metrics: GatewayMetrics) -> None:
        self.chat = {m.model_id: m for m in platform.models if m.kind == "chat"}
        self.store = store
        self.deployer = deployer
        self.metrics = metrics
        self._clients: dict[str, ServeEngineClient] = {}

    def _record(self, model_id: str) -> dict[str, Any] | None:
        try:
            record = self.store.get(KIND, model_id)
        except NotFoundError:
            return None
        return None if record["status"] == "deleted" else record

    async def find(self, model_id: str) -> RegisteredModel | None:
        record = self._record(model_id)
        if record is None:
            return None
        if record["status"] == "deploying":
            since = int(time.time()) - record["created"]
            raise EngineUnavailableError(f"model {model_id!r} is being deployed ({since} s so far); try again soon")
        if record["status"] == "failed":
            raise EngineUnavailableError(f"model {model_id!r} could not be deployed: {record['error']}")
        base = self.chat[record["base_model"]]
        config = derived_config(base, model_id, record["path"])
        client = self._clients.get(model_id)
        if client is None:
            from ray import serve

            handle = serve.get_deployment_handle(deployment_name(config), record["app"])
            client = self._clients[model_id] = ServeEngineClient(handle, model_id, self.metrics)
        # The base's prompts: fine-tuning keeps its tokenizer (read once, when the gateway started).
        return RegisteredModel(config, client, prompt_format=prompt_format_for(base.path, base.prompt_format))

    async def cards(self) -> list[oai.ModelCard]:
        return [
            oai.ModelCard(
                id=record["model_id"],
                created=record["created"],
                root=record["path"],
                parent=record["base_model"],
                max_model_len=self.chat[record["base_model"]].max_model_len,
            )
            for _, record in self.store.list(KIND)
            if record["status"] == "ready" and record["base_model"] in self.chat
        ]

    async def remove(self, model_id: str) -> bool:
        removed = await self.deployer.remove.remote(model_id)
        self._clients.pop(model_id, None)
        return removed


class PlatformModels:
    """The Models API over both kinds of fine-tuned model: adapters, and deployed weights
    (which `unregister_adapter`, and so `DELETE /v1/models/{id}`, also take down)."""

    def __init__(self, adapters: Models, deployed: DeployedModels) -> None:
        self.adapters = adapters
        self.deployed = deployed

    async def list_adapters(self) -> list[Adapter]:
        return await self.adapters.list_adapters()

    async def register_adapter(self, request: RegisterAdapterRequest) -> Adapter:
        return await self.adapters.register_adapter(request)

    async def unregister_adapter(self, adapter_id: str) -> None:
        if not await self.deployed.remove(adapter_id):
            await self.adapters.unregister_adapter(adapter_id)
