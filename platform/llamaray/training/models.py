"""The model a job trains: where its weights are, which modules it has, and how it is loaded."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from llamaray.config import PlatformConfig
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.store.storage import SharedStorage, is_remote


@dataclass(frozen=True)
class BaseWeights:
    """A checkpoint to start from: a base model, optionally with a peft adapter to keep training."""

    model_path: str
    adapter_path: str | None = None
    prompt_format: str = "auto"  # the served model's `prompt_format` (llamaray.inference.prompt_format)


def resolve_model(model: str, platform: PlatformConfig, param: str) -> BaseWeights:
    """A registered model id, or a `file://` URL of a checkpoint directory: a model's weights
    or a finished job's adapter (DPO's `finetuned_model` is a URL, so it is one of these)."""
    for config in platform.models:
        if model in config.ids:
            return BaseWeights(config.path, prompt_format=config.prompt_format)
    known = ", ".join(i for c in platform.models for i in c.ids)
    if is_remote(model):
        return _stored_weights(model, SharedStorage.of_platform(platform), param)
    if not model.startswith(("file://", "/")):
        raise NotFoundError(f"model {model!r} is not registered (known: {known})", param)
    path = Path(
        urllib.parse.unquote(urllib.parse.urlparse(model).path) if model.startswith("file://") else model
    ).resolve()
    readable = [
        Path(p).resolve() for p in [platform.data_dir, *platform.dataset_roots, *(c.path for c in platform.models)]
    ]
    if not any(path.is_relative_to(root) for root in readable):
        raise InvalidRequestError(
            f"{path} is outside the directories this platform may read (its data dir, dataset roots and models)", param
        )
    if (path / "adapter_config.json").is_file():
        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        return BaseWeights(base, str(path))
    if (path / "config.json").is_file():
        return BaseWeights(str(path))
    raise NotFoundError(f"no model or adapter checkpoint at {path}", param)


def _stored_weights(uri: str, storage: SharedStorage, param: str) -> BaseWeights:
    """A checkpoint on the object store (`storage_path`): its URI goes to the workers, which
    download it on their own nodes; what it is, from this node's copy."""
    if storage.local or storage.holds(uri) is None:
        raise InvalidRequestError(f"{uri!r} is outside the platform's storage_path", param)
    try:
        local = storage.local_copy(uri)
    except FileNotFoundError:
        raise NotFoundError(f"no model or adapter checkpoint at {uri}", param) from None
    if (local / "adapter_config.json").is_file():
        base = json.loads((local / "adapter_config.json").read_text())["base_model_name_or_path"]
        return BaseWeights(base, storage.with_options(uri))
    if (local / "config.json").is_file():
        return BaseWeights(storage.with_options(uri))
    raise NotFoundError(f"no model or adapter checkpoint at {uri}", param)


def served_model_id(model_path: str, platform: PlatformConfig) -> str | None:
    """The chat model served from these weights, if any: the base a job's model derives from."""
    for config in platform.models:
        if config.kind == "chat" and Path(config.path).resolve() == Path(model_path).resolve():
            return config.model_id
    return None


def linear_module_names(model_path: str) -> set[str]:
    """Short names of the model's layers LoRA can adapt (`q_proj`, `down_proj`, `lm_head`...).

    Read from the safetensors headers where the checkpoint has them (every module holding a 2-D
    weight: linear layers, and embeddings, which peft adapts too; a tied `lm_head` from the
    config), which needs neither torch nor transformers: importing them for this took most of a
    job driver's start-up. Otherwise the model is built on the meta device, which costs no
    weights and no memory."""
    names = _weight_matrix_modules(Path(model_path))
    if names is not None:
        return names
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def _weight_matrix_modules(model_dir: Path) -> set[str] | None:
    """None where the headers cannot say: no safetensors, or quantized weights stored under
    other names (`qweight`)."""
    config_file = model_dir / "config.json"
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards or not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    if "quantization_config" in config:
        return None
    names = set()
    for shard in shards:
        for key, tensor in _safetensors_header(shard).items():
            if key.endswith(".weight") and len(tensor.get("shape", ())) == 2:
                names.add(key[: -len(".weight")].rsplit(".", 1)[-1])
    if config.get("tie_word_embeddings", True):  # transformers' default: a tied head is not stored
        names.add("lm_head")
    return names or None


def _safetensors_header(shard: Path) -> dict:
    """The tensor table at the head of a safetensors file: an 8-byte little-endian length, then JSON."""
    with shard.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(length))


def training_dtype(use_gpu: bool):
    """fp32 on CPU, bf16 on GPU: the weights', the 4-bit compute's and the adapters' dtype."""
    import torch

    return torch.bfloat16 if use_gpu else torch.float32


def load_causal_lm(model_path: str, load_in_4bit: bool, use_gpu: bool):
    """The model in training precision: fp32 on CPU, bf16 on GPU; QLoRA's base in nf4.

    On CPU, bitsandbytes computes in fp32 and the model must stay on the CPU device map
    (ENV.md); on GPU each worker's model goes to its own device, which Ray Train has set.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = training_dtype(use_gpu)
    if not load_in_4bit:
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,  # lets ZeRO-3 partition the packed weights like any other
    )
    device_map = {"": torch.cuda.current_device()} if use_gpu else "cpu"
    return AutoModelForCausalLM.from_pretrained(
        model_path, dtype=dtype, quantization_config=quantization, device_map=device_map
    )
