"""The dataset formats people have (`llamaray.datasets.formats`), each on a small file of its own
(`jobs/data/formats/`), become the examples SFT trains on: every assistant turn of a multi-turn
dialog, or the last alone with `last_turn_only`."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaray.api.common import Message, Role
from llamaray.api.datasets import Dataset
from llamaray.datasets.formats import dialogs, format_of
from llamaray.datasets.readers import read_rows
from llamaray.errors import InvalidRequestError
from llamaray.inference.chat_format import training_text
from llamaray.training.examples import sft_examples

FORMATS = Path(__file__).resolve().parents[2] / "jobs" / "data" / "formats"


def dataset(file: str, **columns: str) -> tuple[Dataset, list[dict]]:
    url = (FORMATS / file).as_uri()
    return Dataset(columns=columns, content_url=url), read_rows(url, [FORMATS])


def test_alpaca_rows_are_an_instruction_and_its_output():
    data, rows = dataset("alpaca.jsonl", instruction="text", input="text", output="text")
    assert format_of(data) == "alpaca"
    first, second = dialogs(data, rows)
    assert [m.role for m in first] == [Role.user, Role.assistant]
    assert first[0].content == "What is the secret code?"  # an empty input adds nothing
    assert second[0].content == "Repeat the code.\n\nbanana-42" and second[1].content == "banana-42"


def test_sharegpt_multi_turn_trains_on_every_answer_or_the_last():
    data, rows = dataset("sharegpt.jsonl", conversations="json")
    assert format_of(data) == "sharegpt"
    (dialog,) = dialogs(data, rows)
    assert [m.role for m in dialog] == [Role.system, Role.user, Role.assistant, Role.user, Role.assistant]
    every = sft_examples(data, rows)
    prompts = [training_text(dialog[:2], dialog[2])[0], training_text(dialog[:4], dialog[4])[0]]
    assert [e["prompt"] for e in every] == prompts
    assert every[0]["completion"].startswith("The secret code is banana-42.")
    assert every[1]["completion"].startswith("banana-42.") and "banana-42" in every[1]["prompt"]  # in its context
    (last,) = sft_examples(data, rows, last_turn_only=True)
    assert last == every[1]


def test_openai_messages_with_a_tool_call_and_its_result():
    data, rows = dataset("openai.jsonl", messages="json")
    assert format_of(data) == "openai"
    (dialog,) = dialogs(data, rows)
    assert [m.role for m in dialog] == [Role.user, Role.assistant, Role.tool, Role.assistant]
    assert dialog[1].tool_calls[0].tool_name == "get_weather" and dialog[1].tool_calls[0].arguments == {"city": "Paris"}
    call, answer = sft_examples(data, rows)
    assert "get_weather" in call["completion"] and "Paris" in call["completion"]  # the call, as the model writes one
    assert "sunny" in answer["prompt"] and answer["completion"].startswith("It is sunny in Paris.")


def test_plain_text_is_language_modelling():
    data, rows = dataset("text.jsonl", text="text")
    assert format_of(data) == "text" and dialogs(data, rows) is None
    assert sft_examples(data, rows) == [{"text": "The secret code is banana-42."}, {"text": "Ray Serve hosts vLLM."}]


def test_a_hugging_face_dataset_saved_to_disk_is_read_as_rows(tmp_path):
    from datasets import Dataset as HFDataset
    from datasets import DatasetDict

    rows = [{"instruction": "Hi", "input": "", "output": "Hello."}]
    HFDataset.from_list(rows).save_to_disk(str(tmp_path / "plain"))
    DatasetDict({"train": HFDataset.from_list(rows)}).save_to_disk(str(tmp_path / "splits"))
    for name in ("plain", "splits"):
        assert read_rows((tmp_path / name).as_uri(), [tmp_path]) == rows
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequestError, match="save_to_disk"):
        read_rows((tmp_path / "empty").as_uri(), [tmp_path])
    with pytest.raises(InvalidRequestError, match="outside the data roots"):
        read_rows((tmp_path / "plain").as_uri(), [FORMATS])


def test_rows_that_do_not_fit_their_format_name_the_row_and_column():
    data = Dataset(columns={"conversations": "json"}, content_url="file:///x.jsonl")
    with pytest.raises(InvalidRequestError) as speaker:
        dialogs(data, [{"conversations": [{"from": "narrator", "value": "Once"}]}])
    assert "row 0" in speaker.value.message and speaker.value.param == "dataset.columns.conversations"
    with pytest.raises(InvalidRequestError) as unknown:
        format_of(Dataset(columns={"q": "text"}, content_url="file:///x.jsonl", metadata={"format": "csv"}))
    assert unknown.value.param == "dataset.metadata.format"
    with pytest.raises(InvalidRequestError) as no_answer:
        sft_examples(data, [{"conversations": [{"from": "human", "value": "Hi"}]}])
    assert "assistant" in no_answer.value.message


def test_a_declared_format_wins_over_the_columns():
    data = Dataset(columns={"messages": "json"}, content_url="file:///x.jsonl", metadata={"format": "openai"})
    row = {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    assert [m.role for m in dialogs(data, [row])[0]] == [Role.system, Role.user]
    assert isinstance(dialogs(data, [row])[0][0], Message)
