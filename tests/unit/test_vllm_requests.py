"""The requests every vLLM engine builds: a batch's prompts tokenised at once are the same tokens
as each tokenised alone, in the batch's order, whichever rows ask for special tokens."""

from __future__ import annotations

from llamaray.engines.protocol import EngineRequest, GenerationParams
from llamaray.engines.vllm_requests import tokens_prompt, tokens_prompts


def test_a_batch_tokenised_at_once_matches_each_prompt_tokenised_alone(tmp_path):
    from transformers import AutoTokenizer

    from llamaray.models.tiny import CHAT_MODEL_DIR, build_tiny_models

    build_tiny_models(tmp_path, teach=False)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / CHAT_MODEL_DIR)
    requests = [
        EngineRequest(f"r{i}", prompt, GenerationParams(), add_special_tokens=i % 2 == 0)
        for i, prompt in enumerate(["Hello there", "<|begin_of_text|>Hi", "A longer prompt, with words", "x"])
    ]
    together = tokens_prompts(tokenizer, requests)
    alone = [tokens_prompt(tokenizer, request) for request in requests]
    assert [(p["prompt_token_ids"], n) for p, n in together] == [(p["prompt_token_ids"], n) for p, n in alone]
    firsts = [p["prompt_token_ids"][0] == tokenizer.bos_token_id for p, _ in together]
    assert firsts == [True, True, True, False]  # row 1 brings its own BOS; row 3 asks for none
