"""Dataset rows → TRL examples, and the 4xx a dataset without the needed columns gets."""

from __future__ import annotations

import pytest

from llamaray.api.common import Message
from llamaray.api.datasets import Dataset
from llamaray.errors import InvalidRequestError
from llamaray.inference.chat_format import EOT, encode_dialog
from llamaray.training.examples import dpo_examples, sft_examples

DIALOG = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
]


def dataset(**columns: str) -> Dataset:
    return Dataset(columns=columns, content_url="file:///d.jsonl")


def test_a_dialog_trains_on_its_last_answer_as_serving_renders_it():
    (example,) = sft_examples(dataset(conversation="dialog"), [{"conversation": DIALOG}])
    messages = [Message.model_validate(m) for m in DIALOG]
    assert example["prompt"] == encode_dialog(messages[:-1])
    assert example["completion"] == "Hello." + EOT


def test_text_column_is_language_modelling():
    assert sft_examples(dataset(text="text"), [{"text": "abc"}]) == [{"text": "abc"}]


def test_sft_refuses_datasets_it_cannot_train_on():
    with pytest.raises(InvalidRequestError) as no_dialog:
        sft_examples(dataset(question="text"), [{"question": "q"}])
    assert no_dialog.value.param == "dataset.columns"
    with pytest.raises(InvalidRequestError) as no_answer:
        sft_examples(dataset(dialog="dialog"), [{"dialog": DIALOG[:2]}])
    assert no_answer.value.param == "dataset.columns.dialog"


def test_preferences_conversational_and_plain():
    row = {"prompt": DIALOG[:2], "chosen": "Good.", "rejected": [{"role": "assistant", "content": "Bad."}]}
    (example,) = dpo_examples(dataset(prompt="dialog", chosen="text", rejected="dialog"), [row])
    assert example["prompt"] == encode_dialog([Message.model_validate(m) for m in DIALOG[:2]])
    assert example["chosen"] == "Good." + EOT
    assert example["rejected"] == "Bad." + EOT
    (plain,) = dpo_examples(
        dataset(prompt="text", chosen="text", rejected="text"), [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    )
    assert plain == {"prompt": "p", "chosen": "c", "rejected": "r"}


def test_dpo_names_the_missing_columns():
    with pytest.raises(InvalidRequestError) as error:
        dpo_examples(dataset(prompt="text", chosen="text"), [{"prompt": "p", "chosen": "c"}])
    assert "rejected" in error.value.message and error.value.param == "dataset.columns"


def test_trl_trains_on_the_tokens_serving_sends(tmp_path):
    """The tokens TRL's SFTTrainer trains on are the served prompt's, then the answer's (the
    only ones in the loss), for a dialog with a system prompt, where the tokenizer's own chat
    template would differ (a Llama 3.1 template adds a dated system preamble)."""
    from datasets import Dataset as HFDataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from llamaray.models.tiny import CHAT_MODEL_DIR, build_tiny_models
    from llamaray.training.examples import for_tokenizer

    build_tiny_models(tmp_path, teach=False)  # the chat model alone: no adapters to teach
    path = tmp_path / CHAT_MODEL_DIR
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = sft_examples(dataset(conversation="dialog"), [{"conversation": DIALOG}])
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=SFTConfig(output_dir=str(tmp_path / "out"), completion_only_loss=True, use_cpu=True, report_to="none"),
        train_dataset=HFDataset.from_list(for_tokenizer(examples, adds_bos=True)),
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    served = tokenizer(encode_dialog([Message.model_validate(m) for m in DIALOG[:-1]]), add_special_tokens=False)
    answer = tokenizer("Hello." + EOT, add_special_tokens=False).input_ids
    assert row["input_ids"] == served.input_ids + answer
    assert row["labels"] == [-100] * len(served.input_ids) + answer  # the loss covers the answer alone
