"""Models API: the LoRA adapters the chat models serve, beside their base weights.

Not in the July 2024 draft (it has no models API). A finished `lora`, `qlora` or `dpo` job's
adapter is served without being registered, as `<base model id>:<job_uuid>` (its final
checkpoint) and `<base model id>:<job_uuid>:iter-<step>` (any checkpoint); an adapter trained
elsewhere is registered here under a name of its own. vLLM's `/v1/load_lora_adapter` and
`/v1/unload_lora_adapter`, and OpenAI's `DELETE /v1/models/{id}`, reach the same service.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field, model_validator

from llamaray.api.common import ApiModel, ModelId, SafeName
from llamaray.api.jobs import JobUUID

# A registered adapter's name: no ':' (job adapters' ids have them) and nothing a path could misread.
AdapterId = SafeName


class Adapter(ApiModel):
    adapter_id: str
    base_model: str  # the chat model whose replicas serve it
    path: str  # the peft adapter directory
    rank: int
    source: Literal["job", "registered", "config"]  # config: the deployment config serves it
    job_uuid: str | None = None
    checkpoint_iters: int | None = None
    created: int  # seconds since the epoch


class RegisterAdapterRequest(ApiModel):
    """An adapter by directory (`adapter_path`, inside the platform's data roots) or by job
    (`job_uuid`, its final checkpoint unless `checkpoint_iters` names one)."""

    adapter_id: AdapterId
    adapter_path: str | None = None  # a file:// URL or an absolute path
    job_uuid: JobUUID | None = None
    checkpoint_iters: int | None = Field(default=None, ge=0)
    base_model: ModelId | None = None  # default: the served model whose weights the adapter names

    @model_validator(mode="after")
    def _one_source(self) -> "RegisterAdapterRequest":
        if (self.adapter_path is None) == (self.job_uuid is None):
            raise ValueError("give exactly one of adapter_path and job_uuid")
        if self.checkpoint_iters is not None and self.job_uuid is None:
            raise ValueError("checkpoint_iters names a checkpoint of job_uuid")
        return self


class UnregisterAdapterRequest(ApiModel):
    adapter_id: ModelId


class LoadLoRAAdapterRequest(ApiModel):
    """vLLM's `/v1/load_lora_adapter` body: registers `lora_path` as `lora_name`."""

    lora_name: AdapterId
    lora_path: str
    base_model_name: ModelId | None = None


class UnloadLoRAAdapterRequest(ApiModel):
    """vLLM's `/v1/unload_lora_adapter` body."""

    lora_name: ModelId
    lora_int_id: int | None = None  # vLLM's; ignored, the name says which


class ModelDeleted(ApiModel):
    """OpenAI's answer to `DELETE /v1/models/{model}`."""

    id: str
    object: Literal["model"] = "model"
    deleted: bool


class Models(Protocol):
    async def list_adapters(self) -> list[Adapter]: ...

    async def register_adapter(self, request: RegisterAdapterRequest) -> Adapter: ...

    async def unregister_adapter(self, adapter_id: str) -> None: ...
