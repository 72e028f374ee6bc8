"""Tiny, randomly initialised Llama-architecture models, built offline and deterministically.

No test or default may download weights, so the platform builds its own: a chat model whose
byte-level BPE tokenizer carries the Llama 3.1 special tokens and chat template, and a reward
model (sequence classification, one label) on the same tokenizer; then two LoRA adapters on the
chat model and a three-label prompt guard, taught what the agent tests need a real model to do
(`teach.py`). vLLM's CPU attention needs
head_dim >= 64, hence hidden 128 with 2 heads. Real checkpoints are a config change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CHAT_MODEL_DIR = "tiny-llama-chat"
REWARD_MODEL_DIR = "tiny-llama-reward"

NAMED_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]
NUM_SPECIAL_TOKENS = 256  # as in Llama 3.1: the named ones, then reserved ones to fill
BPE_VOCAB_SIZE = 1792  # + 256 special tokens = 2048

# The Llama 3.1 layout for plain chats; prompts with tools are rendered by
# llamaray.inference.chat_format, which agrees with this template when there are none.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- set role = 'ipython' if message['role'] in ['tool', 'ipython'] else message['role'] %}"
    "{{- '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}{{- part['text'] }}{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# A fixed corpus, so the tokenizer is the same on every machine. It mixes prose with the
# words of the prompt format and tool calls, so those merge into few tokens.
CORPUS = """
The quick brown fox jumps over the lazy dog. A platform serves models to users over HTTP.
Llama is a family of large language models. Ray is a framework for distributed Python.
Serving, fine-tuning and grounding models on a cluster of machines with many GPUs.
What is the weather like in Paris today? It is sunny and warm, about twenty degrees.
Tell me a story about a robot who learns to paint. Once upon a time there was a robot.
You are a helpful assistant. Answer the question briefly and accurately.
Environment: ipython Tools: brave_search, wolfram_alpha Cutting Knowledge Date: December 2023
Today Date: 26 July 2024 brave_search.call(query="current weather") wolfram_alpha.call(query="2+2")
<function=get_weather>{"city": "Paris", "unit": "celsius"}</function>
{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}
def main(): print("hello world") import math; return math.sqrt(16) for i in range(10):
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 42. Memory banks hold documents.
The reward model scores each answer; better answers receive higher scores than worse ones.
Synthetic data generation samples several answers per prompt and keeps the best ones.
"""


@dataclass(frozen=True)
class TinyModelSpec:
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 0


def special_tokens() -> list[str]:
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(2, NUM_SPECIAL_TOKENS - len(NAMED_SPECIAL_TOKENS) + 2)]
    return NAMED_SPECIAL_TOKENS + reserved


def build_tokenizer():
    """A byte-level BPE tokenizer with Llama 3.1's special tokens; it adds BOS like Llama 3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = special_tokens()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.split("\n") * 4, trainer)
    bos = specials[0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def llama_config(tokenizer, spec: TinyModelSpec, **overrides):
    from transformers import LlamaConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|begin_of_text|>", "<|end_of_text|>", "<|eom_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>")}
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_theta=500000.0,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=[ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]],
        pad_token_id=ids["<|finetune_right_pad_id|>"],
        tie_word_embeddings=False,
        dtype="float32",
        **overrides,
    )


def build_tiny_models(out_dir: str | Path, spec: TinyModelSpec = TinyModelSpec(), teach: bool = True) -> dict[str, Path]:
    """Write the chat and reward models under `out_dir`, the same bytes on every run, and
    (with `teach`, about a minute on 2 cores) the agent and guard adapters."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM, LlamaForSequenceClassification

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    paths = {"chat": out / CHAT_MODEL_DIR, "reward": out / REWARD_MODEL_DIR}

    torch.manual_seed(spec.seed)
    config = llama_config(tokenizer, spec)
    chat = LlamaForCausalLM(config).eval()
    chat.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    chat.save_pretrained(paths["chat"])
    tokenizer.save_pretrained(paths["chat"])

    torch.manual_seed(spec.seed + 1)
    reward = LlamaForSequenceClassification(llama_config(tokenizer, spec, num_labels=1)).eval()
    reward.save_pretrained(paths["reward"])
    tokenizer.save_pretrained(paths["reward"])

    for kind, path in paths.items():
        (path / "llamaray.json").write_text(json.dumps({"kind": kind, "spec": spec.__dict__}, sort_keys=True))
    if not teach:
        return paths

    from llamaray.models.teach import PROMPT_GUARD_DIR, PROMPT_GUARD_LABELS, PROMPT_GUARD_LESSONS, teach_classifier
    from llamaray.models.teach import teach_tiny_adapters

    for kind, path in teach_tiny_adapters(out, paths["chat"]).items():
        (path / "llamaray.json").write_text(json.dumps({"kind": f"{kind}-adapter"}, sort_keys=True))
        paths[kind] = path

    paths["prompt_guard"] = out / PROMPT_GUARD_DIR
    torch.manual_seed(spec.seed + 2)
    labels = dict(enumerate(PROMPT_GUARD_LABELS))
    guard_config = llama_config(
        tokenizer, spec, num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    LlamaForSequenceClassification(guard_config).save_pretrained(paths["prompt_guard"])
    tokenizer.save_pretrained(paths["prompt_guard"])
    teach_classifier(paths["prompt_guard"], PROMPT_GUARD_LESSONS)
    (paths["prompt_guard"] / "llamaray.json").write_text(json.dumps({"kind": "prompt-guard"}, sort_keys=True))
    return paths


def tiny_models_present(out_dir: str | Path) -> bool:
    out = Path(out_dir)
    dirs = (CHAT_MODEL_DIR, REWARD_MODEL_DIR, "tiny-llama-agent", "tiny-llama-guard", "tiny-prompt-guard")
    return all((out / d / "llamaray.json").exists() for d in dirs)
