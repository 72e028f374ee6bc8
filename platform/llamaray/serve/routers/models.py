"""The adapters the chat models serve (`llamaray.api.models`), and the routes vLLM and OpenAI
users already call for the same thing: `/v1/load_lora_adapter`, `/v1/unload_lora_adapter` and
`DELETE /v1/models/{model}`."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from llamaray.api.models import (
    Adapter,
    LoadLoRAAdapterRequest,
    ModelDeleted,
    RegisterAdapterRequest,
    UnloadLoRAAdapterRequest,
    UnregisterAdapterRequest,
)
from llamaray.serve.routers.deps import Services, services

router = APIRouter(tags=["models"])


@router.get("/models/adapters", response_model=list[Adapter])
async def adapters(s: Services = Depends(services)):
    return await s.models.list_adapters()


@router.post("/models/adapters/register", response_model=Adapter)
async def register(request: RegisterAdapterRequest, s: Services = Depends(services)):
    return await s.models.register_adapter(request)


@router.post("/models/adapters/unregister", response_model=None)
async def unregister(request: UnregisterAdapterRequest, s: Services = Depends(services)) -> None:
    await s.models.unregister_adapter(request.adapter_id)


@router.post("/v1/load_lora_adapter", response_class=PlainTextResponse)
async def load_lora_adapter(request: LoadLoRAAdapterRequest, s: Services = Depends(services)) -> str:
    registration = RegisterAdapterRequest(
        adapter_id=request.lora_name, adapter_path=request.lora_path, base_model=request.base_model_name
    )
    await s.models.register_adapter(registration)
    return f"Success: LoRA adapter '{request.lora_name}' added successfully."


@router.post("/v1/unload_lora_adapter", response_class=PlainTextResponse)
async def unload_lora_adapter(request: UnloadLoRAAdapterRequest, s: Services = Depends(services)) -> str:
    await s.models.unregister_adapter(request.lora_name)
    return f"Success: LoRA adapter '{request.lora_name}' removed successfully."


@router.delete("/v1/models/{model:path}", response_model=ModelDeleted)
async def delete_model(model: str, s: Services = Depends(services)):
    await s.models.unregister_adapter(model)
    return ModelDeleted(id=model, deleted=True)
