"""Which LoRA adapters the chat models serve, and the checks that keep a bad one off an engine.

An adapter is served by its base model's own replicas, as a vLLM LoRA per request: nothing is
deployed. A finished `lora`, `qlora` or `dpo` job's adapter needs no registration (its id names
the job, and the tracker's record says where its checkpoints are), so it answers as soon as the
job completes; adapters trained elsewhere are registered under a name in the metadata store.
Both outlive a restart. Every check vLLM would otherwise fail deep inside an engine (a rank above
`max_lora_rank`, another base model, DoRA) is a 400 here, before a request reaches a replica.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Any, Protocol

from llamaray.api.models import Adapter, RegisterAdapterRequest
from llamaray.config import ModelConfig
from llamaray.datasets.readers import path_inside
from llamaray.engines.protocol import AdapterRef
from llamaray.errors import ConflictError, InvalidRequestError, NotFoundError
from llamaray.security.ownership import Owners
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage, is_remote

KIND = "adapter"  # the store's records: registered adapters, and job adapters taken off the list
JOB_ALGORITHMS = ("lora", "qlora", "dpo")  # what trains an adapter vLLM applies as a LoRA
CACHE_S = 2.0  # how long a replica trusts what it found about an adapter id
CHECKPOINT_PREFIX = "iter-"


class JobRecords(Protocol):
    """The tracker's records of jobs (`llamaray.jobs.control.JobControl`)."""

    async def record(self, job_uuid: str) -> dict[str, Any]: ...

    async def jobs(self) -> list[dict[str, Any]]: ...


def adapter_ref(adapter: Adapter) -> AdapterRef:
    """The engine's handle on an adapter; its int id is a hash of the id, so every gateway
    replica and every engine replica agree on it without talking to each other."""
    return AdapterRef(adapter.adapter_id, adapter.path, (zlib.crc32(adapter.adapter_id.encode()) & 0x7FFFFFFF) or 1)


def check_adapter(path: Path, base: ModelConfig, param: str) -> int:
    """The adapter's rank, once it is known that `base`'s engines can apply it."""
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise NotFoundError(f"no peft adapter at {path} (it has no adapter_config.json)", param)
    config = json.loads(config_file.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise InvalidRequestError(f"a {config.get('peft_type')} adapter: only LoRA adapters are served", param)
    if config.get("use_dora"):
        raise InvalidRequestError(
            "a DoRA adapter: vLLM cannot apply it as a LoRA; merge it into its base weights and serve those", param
        )
    if not base.serves_adapters:
        raise InvalidRequestError(f"model {base.model_id!r} serves no adapters (its lora.max_loras is 0)", param)
    rank = max([int(config["r"]), *(int(r) for r in (config.get("rank_pattern") or {}).values())])
    if rank > base.lora.max_lora_rank:
        raise InvalidRequestError(
            f"the adapter's rank {rank} exceeds max_lora_rank={base.lora.max_lora_rank} of {base.model_id!r}", param
        )
    trained_on = config.get("base_model_name_or_path")
    if trained_on and not _same_weights(trained_on, base.path):
        raise InvalidRequestError(
            f"the adapter was trained on {trained_on}, not on the weights of {base.model_id!r} ({base.path})", param
        )
    extra = sorted(set(config.get("modules_to_save") or []))
    if extra:
        raise InvalidRequestError(f"the adapter saves whole modules ({', '.join(extra)}); vLLM cannot serve it", param)
    return rank


def _same_weights(trained_on: str, base_path: str) -> bool:
    if trained_on == base_path:
        return True
    return trained_on.startswith("/") and Path(trained_on).resolve() == Path(base_path).resolve()


def _checkpoint(record: dict[str, Any], iters: int | None) -> dict[str, Any] | None:
    checkpoints = record.get("checkpoints") or []
    if iters is None:
        return max(checkpoints, key=lambda c: c["iters"]) if record["status"] == "completed" and checkpoints else None
    return next((c for c in checkpoints if c["iters"] == iters), None)


def _created(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return int(time.time())


class AdapterCatalog:
    """Finds the adapter a request names; lists, registers and unregisters adapters (`Models`).

    A key sees the adapters it registered and those of its own jobs, and the config's (the
    ownership rules of `llamaray.security.ownership`); to it, any other does not exist."""

    def __init__(
        self,
        models: list[ModelConfig],
        jobs: JobRecords,
        store: MetadataStore,
        roots: list[Path],
        reserved: set[str],
        storage: SharedStorage | None = None,
    ) -> None:
        self.chat = {model_id: m for m in models if m.kind == "chat" for model_id in m.ids}
        # The chat models by the weights they serve: an adapter names its base by that path.
        self.by_path = {
            str(Path(m.path).resolve()) if m.path.startswith("/") else m.path: m for m in models if m.kind == "chat"
        }
        self.jobs = jobs
        self.store = store
        self.roots = roots
        # Adapters the deployment config serves, by id, with their base model.
        self.configured = {a: (m, Path(path)) for m in models if m.kind == "chat" for a, path in m.adapters.items()}
        self.reserved = reserved | {i for m in models for i in m.ids} | set(self.configured)
        self._found: dict[str, tuple[float, Adapter]] = {}
        self.owners = Owners(store)
        self.storage = storage  # where jobs publish checkpoints (`storage_path`)

    def _checkpoint_path(self, checkpoint: dict[str, Any]) -> Path | None:
        """A local directory holding the checkpoint: where it lies, or this replica's copy of one
        on an object store; None when it is gone (or not in the platform's storage)."""
        url = checkpoint["path"]
        if not is_remote(url):
            return Path(url[len("file://") :] if url.startswith("file://") else url)
        if self.storage is None or self.storage.holds(url) is None:
            return None
        try:
            return self.storage.local_copy(url)
        except FileNotFoundError:
            return None

    def _engine_path(self, checkpoint: dict[str, Any], local: Path) -> str:
        """What an engine replica loads: the local path, or on an object store the URI with the
        storage's options (an engine on another node downloads it, `llamaray.store.storage`)."""
        url = checkpoint["path"]
        return self.storage.with_options(url) if is_remote(url) and self.storage else str(local)

    def _visible(self, adapter: Adapter) -> bool:
        if adapter.source == "config":
            return True
        if adapter.source == "job":
            return self.owners.visible("job", adapter.job_uuid or "")
        return self.owners.visible(KIND, adapter.adapter_id)

    async def find(self, model_id: str, param: str = "model") -> tuple[ModelConfig, Adapter] | None:
        """The adapter `model_id` names with its base model; None when it names none."""
        cached = self._found.get(model_id)
        if cached and time.monotonic() - cached[0] < CACHE_S:
            adapter = cached[1]
        else:
            adapter = await self._lookup(model_id, param)
            if adapter is None:
                return None
            self._found[model_id] = (time.monotonic(), adapter)
        if not self._visible(adapter):
            return None
        return self.chat[adapter.base_model], adapter

    async def _lookup(self, model_id: str, param: str) -> Adapter | None:
        if model_id in self.configured:
            return self._configured(model_id, param)
        record = self._record(model_id)
        if record is not None:
            return None if record.get("hidden") else Adapter.model_validate(record)
        parsed = self._parse_job_id(model_id)
        if parsed is None:
            return None
        base, job_uuid, iters = parsed
        try:
            job = await self.jobs.record(job_uuid)
        except NotFoundError:
            return None
        return self._job_adapter(model_id, base, job, iters, param)

    def _parse_job_id(self, model_id: str) -> tuple[ModelConfig, str, int | None] | None:
        """`<base>:<job_uuid>` or `<base>:<job_uuid>:iter-<step>`; a base id may hold ':' too."""
        parts = model_id.split(":")
        for cut in range(1, len(parts)):
            base, rest = ":".join(parts[:cut]), parts[cut:]
            if base not in self.chat or len(rest) > 2:
                continue
            if len(rest) == 1:
                return self.chat[base], rest[0], None
            step = rest[1][len(CHECKPOINT_PREFIX) :]
            if rest[1].startswith(CHECKPOINT_PREFIX) and step.isdigit():
                return self.chat[base], rest[0], int(step)
        return None

    def _job_adapter(
        self, model_id: str, base: ModelConfig, job: dict[str, Any], iters: int | None, param: str
    ) -> Adapter | None:
        if job.get("kind") not in ("sft", "dpo") or job.get("algorithm") not in JOB_ALGORITHMS:
            return None  # a full or DoRA job's model is deployed on its own (llamaray.serve.deployed)
        checkpoint = _checkpoint(job, iters)
        if checkpoint is None:
            return None
        path = self._checkpoint_path(checkpoint)
        if path is None or not path.is_dir():  # its files were deleted
            return None
        rank = check_adapter(path, base, param)
        return Adapter(
            adapter_id=model_id,
            base_model=base.model_id,
            path=self._engine_path(checkpoint, path),
            rank=rank,
            source="job",
            job_uuid=job["job_uuid"],
            checkpoint_iters=checkpoint["iters"],
            created=_created(path),
        )

    def _configured(self, adapter_id: str, param: str) -> Adapter:
        base, path = self.configured[adapter_id]
        return Adapter(
            adapter_id=adapter_id,
            base_model=base.model_id,
            path=str(path),
            rank=check_adapter(path, base, param),
            source="config",
            created=_created(path),
        )

    def _record(self, adapter_id: str) -> dict[str, Any] | None:
        try:
            return self.store.get(KIND, adapter_id)
        except NotFoundError:
            return None

    async def list_adapters(self) -> list[Adapter]:
        """Registered adapters, and each finished adapter job's final checkpoint on the base
        model its adapter names (intermediate checkpoints are served, not listed)."""
        records = dict(self.store.list(KIND))
        adapters = [Adapter.model_validate(r) for r in records.values() if not r.get("hidden")]
        for adapter_id in self.configured:
            try:
                adapters.append(self._configured(adapter_id, "model"))
            except (InvalidRequestError, NotFoundError):
                continue  # its directory is missing or unfit: requests naming it get the error
        for job in await self.jobs.jobs():
            checkpoint = _checkpoint(job, None)
            if job.get("kind") not in ("sft", "dpo") or job.get("algorithm") not in JOB_ALGORITHMS or not checkpoint:
                continue
            path = self._checkpoint_path(checkpoint)
            base = self._trained_on(path) if path is not None else None
            if base is None:
                continue
            adapter_id = f"{base.model_id}:{job['job_uuid']}"
            if adapter_id in records:  # taken off the list
                continue
            try:
                adapter = self._job_adapter(adapter_id, base, job, None, "model")
            except (InvalidRequestError, NotFoundError):
                continue
            if adapter is not None:
                adapters.append(adapter)
        return sorted(filter(self._visible, adapters), key=lambda a: (a.created, a.adapter_id))

    def _trained_on(self, path: Path) -> ModelConfig | None:
        try:
            trained_on = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
        except (OSError, ValueError):
            return None
        key = str(Path(trained_on).resolve()) if trained_on.startswith("/") else trained_on
        return self.by_path.get(key)

    async def register_adapter(self, request: RegisterAdapterRequest) -> Adapter:
        adapter_id = request.adapter_id
        if adapter_id in self.reserved or self._parse_job_id(adapter_id):
            raise ConflictError(f"{adapter_id!r} already names a model served here", "adapter_id")
        if request.job_uuid is not None:
            if not self.owners.visible("job", request.job_uuid):
                raise NotFoundError(f"job {request.job_uuid!r} does not exist", "job_uuid")
            job = await self.jobs.record(request.job_uuid)
            checkpoint = _checkpoint(job, request.checkpoint_iters)
            if checkpoint is None:
                which = (
                    f"no checkpoint at step {request.checkpoint_iters}" if request.checkpoint_iters else "not completed"
                )
                raise NotFoundError(f"job {request.job_uuid!r} has {which}", "checkpoint_iters")
            path, param = self._checkpoint_path(checkpoint), "job_uuid"
            if path is None:
                raise NotFoundError(f"the checkpoint of job {request.job_uuid!r} is gone: {checkpoint['path']}", param)
            served = self._engine_path(checkpoint, path)
        else:
            path, param = path_inside(request.adapter_path or "", self.roots, "adapter_path"), "adapter_path"
            served = str(path)
        base = self._base(path, request.base_model, param)
        rank = check_adapter(path, base, param)
        adapter = Adapter(
            adapter_id=adapter_id,
            base_model=base.model_id,
            path=served,
            rank=rank,
            source="registered",
            job_uuid=request.job_uuid,
            checkpoint_iters=request.checkpoint_iters,
            created=int(time.time()),
        )
        existing = self._record(adapter_id)
        if existing is not None and not existing.get("hidden"):
            raise ConflictError(f"adapter {adapter_id!r} is already registered", "adapter_id")
        self.store.put(KIND, adapter_id, adapter.model_dump())
        self.owners.claim(KIND, adapter_id)
        self._found.pop(adapter_id, None)
        return adapter

    def _base(self, path: Path, base_model: str | None, param: str) -> ModelConfig:
        if base_model is not None:
            if base_model not in self.chat:
                raise NotFoundError(f"chat model {base_model!r} is not served here", "base_model")
            return self.chat[base_model]
        if not (path / "adapter_config.json").is_file():
            raise NotFoundError(f"no peft adapter at {path} (it has no adapter_config.json)", param)
        base = self._trained_on(path)
        if base is None:
            trained_on = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
            raise InvalidRequestError(
                f"the adapter was trained on {trained_on}, the weights of no chat model served here "
                f"({', '.join(sorted({m.model_id for m in self.chat.values()}))}); name its base_model",
                param,
            )
        return base

    async def unregister_adapter(self, adapter_id: str) -> None:
        """A registered adapter is forgotten; a job's is taken off the list and stops answering."""
        if adapter_id in self.configured:
            raise ConflictError(
                f"adapter {adapter_id!r} is served by the deployment config; edit it there", "adapter_id"
            )
        known = await self._lookup(adapter_id, "adapter_id")
        if known is not None and not self._visible(known):
            raise NotFoundError(f"no adapter {adapter_id!r} is served", "adapter_id")
        record = self._record(adapter_id)
        if record is not None and not record.get("hidden"):
            self.store.delete(KIND, adapter_id)
        elif record is None and await self._lookup(adapter_id, "adapter_id") is not None:
            self.store.put(KIND, adapter_id, {"hidden": True})
        else:
            raise NotFoundError(f"no adapter {adapter_id!r} is served", "adapter_id")
        self._found.pop(adapter_id, None)
