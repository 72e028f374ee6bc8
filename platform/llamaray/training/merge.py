"""A LoRA or DoRA adapter folded into its base weights: a whole checkpoint that vLLM loads like
any model. This is how a DoRA adapter is served, since vLLM cannot apply DoRA per request."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def merge_adapter(adapter_dir: str, out_dir: str) -> str:
    """Writes the merged weights and the tokenizer to `out_dir` (whole or not at all) and
    answers it; a merge already done is not done again."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    if (out / "config.json").is_file():
        return str(out)
    base_path = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["base_model_name_or_path"]
    torch.set_num_threads(1)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(partial)
    os.replace(partial, out)
    return str(out)
