"""The API types accept the draft's JSON and refuse bad input by field."""

import base64

import pytest
from pydantic import ValidationError

from llamaray.api.agentic_system import AgenticSystemExecuteRequest, AgenticSystemTurn
from llamaray.api.common import Attachment, Dialog, Message, content_text
from llamaray.api.inference import ChatCompletionRequest, CompletionRequest
from llamaray.api.memory_banks import MemoryBankDocument
from llamaray.api.post_training import PostTrainingJobStatus, PostTrainingSFTRequest


def test_completion_request_defaults_follow_the_draft():
    r = CompletionRequest.model_validate({"content": "hi", "model": "llama3_8b"})
    assert (r.max_tokens, r.stream, r.logprobs) == (0, False, False)
    assert r.sampling_params.strategy.value == "greedy" and r.sampling_params.top_p == 0.95


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"sampling_params": {"top_p": 1.5}}, "top_p"),
        ({"sampling_params": {"strategy": "beam"}}, "strategy"),
        ({"maxtokens": 3}, "maxtokens"),
    ],
)
def test_bad_fields_are_named(bad, field):
    with pytest.raises(ValidationError) as info:
        CompletionRequest.model_validate({"content": "hi", "model": "m", **bad})
    assert any(field in ".".join(map(str, e["loc"])) for e in info.value.errors())


def test_dialog_puts_history_first():
    d = Dialog(message=Message(role="user", content="now"), message_history=[Message(role="user", content="before")])
    assert [m.content for m in d.messages()] == ["before", "now"]


def test_content_may_mix_text_and_attachments():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "dialog": {
                "message": {
                    "role": "user",
                    "content": ["look: ", {"url": "https://x.org/a.png", "mime_type": "image/png"}],
                }
            },
        }
    )
    assert content_text(req.dialog.message.content) == "look: https://x.org/a.png"
    with pytest.raises(ValidationError):
        Attachment(url="ftp://nope", mime_type="text/plain")


def test_memory_document_content_is_base64_in_json():
    doc = MemoryBankDocument(uuid="d1", content="héllo".encode(), mime_type="text/plain")
    encoded = doc.model_dump_json()
    assert base64.b64encode("héllo".encode()).decode() in encoded
    assert MemoryBankDocument.model_validate_json(encoded).content == "héllo".encode()


def test_steps_are_a_tagged_union():
    turn = AgenticSystemTurn.model_validate(
        {
            "user_messages": [{"role": "user", "content": "hi"}],
            "steps": [{"step_type": "model_inference", "uuid": "s1", "text": "hello"}],
            "response_message": {"role": "assistant", "content": "hello"},
        }
    )
    assert turn.steps[0].text == "hello"
    AgenticSystemExecuteRequest(agent_uuid="a", messages=[Message(role="user", content="x")], turn_history=[turn])


def test_post_training_status_includes_cancelled_and_sft_request_validates():
    assert PostTrainingJobStatus("cancelled")
    config = {
        "job_uuid": "j1",
        "model": "llama3_8b",
        "dataset": {"columns": {"dialog": "dialog"}, "content_url": "file:///data/train.jsonl"},
        "validation_dataset": {"columns": {"dialog": "dialog"}, "content_url": "file:///data/val.jsonl"},
        "algorithm": "lora",
        "algorithm_config": {
            "lora_attn_modules": ["q_proj"],
            "apply_lora_to_mlp": False,
            "apply_lora_to_output": False,
            "rank": 8,
            "alpha": 16,
        },
        "optimizer_config": {"optimizer_type": "adamw", "lr": 1e-4, "lr_min": 1e-5, "weight_decay": 0.0},
        "training_config": {
            "n_epochs": 1,
            "batch_size": 2,
            "shuffle": True,
            "n_iters": 0,
            "enable_activation_checkpointing": False,
            "memory_efficient_fsdp_wrap": False,
            "fsdp_cpu_offload": False,
        },
        "hyperparam_search_config": {},
        "logger_config": {},
    }
    assert PostTrainingSFTRequest.model_validate(config).algorithm_config.rank == 8
    config["algorithm_config"]["rank"] = 0
    with pytest.raises(ValidationError):
        PostTrainingSFTRequest.model_validate(config)


def test_api_package_imports_no_heavy_dependencies():
    import subprocess
    import sys

    code = (
        "import sys, llamaray.api.inference, llamaray.api.agentic_system, llamaray.api.memory_banks, "
        "llamaray.api.post_training, llamaray.api.datasets, llamaray.api.reward_scoring, "
        "llamaray.api.synthetic_data_generation, llamaray.api.openai; "
        "print(sorted(m for m in ('ray', 'torch', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["../../jobs/data/secret_code", "/tmp/x", "..", ".hidden", "a/b", "a\\b", "x\x00y"])
def test_names_that_become_files_are_names_not_paths(name):
    from llamaray.api.data_jobs import BatchJobRequest
    from llamaray.api.models import RegisterAdapterRequest

    with pytest.raises(ValidationError, match="output_dataset_id"):
        BatchJobRequest.model_validate({"model": "m", "content_batch": ["hi"], "output_dataset_id": name})
    with pytest.raises(ValidationError, match="adapter_id"):
        RegisterAdapterRequest.model_validate({"adapter_id": name, "adapter_path": "/x"})
