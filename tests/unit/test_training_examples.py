"""Dataset rows → TRL examples, and the 4xx a dataset without the needed columns gets."""

from __future__ import annotations

import pytest

from llamaray.api.datasets import Dataset
from llamaray.errors import InvalidRequestError
from llamaray.training.examples import dpo_examples, sft_examples

DIALOG = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
]


def dataset(**columns: str) -> Dataset:
    return Dataset(columns=columns, content_url="file:///d.jsonl")


def test_a_dialog_trains_on_its_last_answer():
    (example,) = sft_examples(dataset(conversation="dialog"), [{"conversation": DIALOG}])
    assert example["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert example["completion"] == [{"role": "assistant", "content": "Hello."}]


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
    assert example["chosen"] == [{"role": "assistant", "content": "Good."}]
    assert example["rejected"] == [{"role": "assistant", "content": "Bad."}]
    (plain,) = dpo_examples(
        dataset(prompt="text", chosen="text", rejected="text"), [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    )
    assert plain == {"prompt": "p", "chosen": "c", "rejected": "r"}


def test_dpo_names_the_missing_columns():
    with pytest.raises(InvalidRequestError) as error:
        dpo_examples(dataset(prompt="text", chosen="text"), [{"prompt": "p", "chosen": "c"}])
    assert "rejected" in error.value.message and error.value.param == "dataset.columns"
