"""The tiny models build offline, the same bytes every time, with Llama 3.1's special tokens."""

import hashlib
import json

from llamaray.models.tiny import CHAT_MODEL_DIR, REWARD_MODEL_DIR, build_tiny_models


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_build_is_deterministic_and_complete(tmp_path):
    first = build_tiny_models(tmp_path / "a", teach=False)
    second = build_tiny_models(tmp_path / "b", teach=False)
    for kind in ("chat", "reward"):
        assert digest(first[kind]) == digest(second[kind])

    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(first["chat"])
    for token in (
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<|python_tag|>",
    ):
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id
        assert len(tokenizer(token, add_special_tokens=False).input_ids) == 1
    assert tokenizer("hi").input_ids[0] == tokenizer.convert_tokens_to_ids("<|begin_of_text|>")

    chat = AutoConfig.from_pretrained(first["chat"])
    assert chat.architectures == ["LlamaForCausalLM"]
    assert chat.hidden_size // chat.num_attention_heads >= 64  # vLLM's CPU attention needs it
    reward = json.loads((tmp_path / "a" / REWARD_MODEL_DIR / "config.json").read_text())
    assert reward["architectures"] == ["LlamaForSequenceClassification"] and len(reward["id2label"]) == 1
    assert (tmp_path / "a" / CHAT_MODEL_DIR / "llamaray.json").exists()
