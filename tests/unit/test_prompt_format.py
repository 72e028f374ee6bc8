"""Each chat model's prompts in its own format: Llama 3.1's for a Llama 3 tokenizer, the
tokenizer's chat template for any other (here ChatML, as Qwen and SmolLM2 write it), the same in
serving and in training."""

from __future__ import annotations

import pytest

from llamaray.api.common import Message, Role
from llamaray.api.datasets import Dataset
from llamaray.engines.protocol import GenerationParams
from llamaray.inference.chat_format import EOM, EOT, encode_dialog
from llamaray.inference.prompt_format import LLAMA3, ChatTemplateFormat, prompt_format_for
from llamaray.inference.service import chat_engine_request
from llamaray.training.examples import dpo_examples, sft_examples

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DIALOG = [
    Message(role=Role.system, content="Be brief."),
    Message(role=Role.user, content="Hi"),
    Message(role=Role.assistant, content="Hello."),
]


@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory):
    """A ChatML tokenizer, as a SmolLM2 or Qwen checkpoint has: no Llama 3 header tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(["Hello there, be brief."], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", chat_template=CHATML)
    path = tmp_path_factory.mktemp("chatml")
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from llamaray.models.tiny import build_tokenizer

    path = tmp_path_factory.mktemp("llama")
    build_tokenizer().save_pretrained(path)
    return path


def test_auto_reads_the_tokenizer(llama_dir, chatml_dir):
    assert prompt_format_for(str(llama_dir)) is LLAMA3
    assert isinstance(prompt_format_for(str(chatml_dir)), ChatTemplateFormat)
    assert prompt_format_for(str(chatml_dir), "llama3") is LLAMA3  # the config decides when it says
    assert isinstance(prompt_format_for(str(llama_dir), "chat_template"), ChatTemplateFormat)


def test_a_llama_tokenizer_is_told_without_importing_transformers(llama_dir, chatml_dir, tmp_path):
    """A training job's driver decides the format; transformers' import took seconds of its start."""
    import subprocess
    import sys

    check = (
        "import sys; from llamaray.inference.prompt_format import LLAMA3, prompt_format_for; "
        f"assert prompt_format_for({str(llama_dir)!r}) is LLAMA3; assert 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
    (tmp_path / "tokenizer.json").write_text("not json")  # unreadable: transformers decides, as before
    assert prompt_format_for(str(tmp_path)) is LLAMA3  # (its warning: no tokenizer there)
    assert isinstance(prompt_format_for(str(chatml_dir)), ChatTemplateFormat)


def test_a_chat_template_model_is_served_its_own_prompts(chatml_dir):
    chatml = prompt_format_for(str(chatml_dir))
    request = chat_engine_request(DIALOG[:2], [], GenerationParams(max_tokens=8), "messages", prompt_format=chatml)
    assert (
        request.prompt
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert request.stop_tokens == [] and request.params.skip_special_tokens  # its EOS ends the turn
    llama = chat_engine_request(DIALOG[:2], [], GenerationParams(max_tokens=8), "messages")
    assert llama.prompt == encode_dialog(DIALOG[:2]) and llama.stop_tokens == [EOT, EOM]


def test_training_on_a_chat_template_model_uses_the_template(chatml_dir):
    chatml = prompt_format_for(str(chatml_dir))
    dataset = Dataset(columns={"dialog": "dialog"}, content_url="file:///d.jsonl")
    rows = [{"dialog": [m.model_dump(mode="json") for m in DIALOG]}]
    (example,) = sft_examples(dataset, rows, prompt_format=chatml)
    assert (
        example["prompt"] == chat_engine_request(DIALOG[:2], [], GenerationParams(), "m", prompt_format=chatml).prompt
    )
    assert example["completion"] == "Hello.<|im_end|>\n"  # the answer, closed as the template closes it
    preferences = Dataset(columns={"prompt": "dialog", "chosen": "text", "rejected": "text"}, content_url="file:///d")
    row = {"prompt": rows[0]["dialog"][:2], "chosen": "Good.", "rejected": "Bad."}
    (pair,) = dpo_examples(preferences, [row], prompt_format=chatml)
    assert pair["prompt"] == example["prompt"] and pair["chosen"] == "Good.<|im_end|>\n"


def test_a_tokenizer_without_a_template_cannot_be_asked_for_one(llama_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no chat template"):
        prompt_format_for(str(tmp_path), "chat_template")


def test_batch_and_synthetic_data_jobs_write_a_chat_template_models_prompts(chatml_dir):
    """The jobs' rows take the generator's format, as its chat routes do (they once took Llama's)."""
    import asyncio

    from llamaray.api.data_jobs import BatchJobRequest
    from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest
    from llamaray.config import ModelConfig, PlatformConfig
    from llamaray.pipelines.inputs import batch_rows, check_batch, check_sdg, sdg_rows

    platform = PlatformConfig(
        models=[
            ModelConfig(model_id="chatml", path=str(chatml_dir)),
            ModelConfig(model_id="reward", path=str(chatml_dir), kind="reward", max_model_len=512),
        ]
    )
    expected = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    batch = BatchJobRequest(model="chatml", batch_dialogs=[{"message": {"role": "user", "content": "Hi"}}])
    inputs = asyncio.run(check_batch(batch, platform, None))
    assert isinstance(inputs.prompt_format, ChatTemplateFormat) and inputs.stop_tokens == []
    assert batch_rows(batch, platform, None, inputs.prompt_format)[0]["prompt"] == expected

    sdg = SyntheticDataGenerationRequest(
        model="chatml", reward_scoring="reward", prompts=[{"role": "user", "content": "Hi"}], max_tokens=8
    )
    inputs, _ = asyncio.run(check_sdg(sdg, platform, None))
    assert sdg_rows(sdg, platform, None, inputs.prompt_format)[0]["prompt"] == expected


def test_tools_for_a_template_without_them_are_refused_not_dropped(chatml_dir):
    """CHATML renders no `tools`: a request with tools would be answered as if it had none."""
    from llamaray.api.common import ToolDefinition
    from llamaray.errors import InvalidRequestError

    chatml = prompt_format_for(str(chatml_dir))
    assert not chatml.takes_tools() and LLAMA3.takes_tools()
    tools = [ToolDefinition(tool_name="get_weather", parameters={"type": "object"})]
    with pytest.raises(InvalidRequestError) as refused:
        chat_engine_request(
            DIALOG[:2], tools, GenerationParams(), "messages", prompt_format=chatml, tools_param="tools"
        )
    assert refused.value.param == "tools"
    forced = chat_engine_request(
        DIALOG[:2], tools, GenerationParams(), "messages", prompt_format=chatml, tools_param=None
    )
    assert forced.prompt.endswith("<|im_start|>assistant\n")  # a forced call's schema shapes the answer instead
