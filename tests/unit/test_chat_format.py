"""The Llama 3.1 encoder against the model's published prompt-format examples."""

from datetime import date

from llamaray.api.common import Message, ToolCall, ToolDefinition, ToolResponse
from llamaray.inference.chat_format import chat_turns, encode_dialog, encode_message, prefill_text

TODAY = date(2024, 7, 23)


def msg(role, content, **kw):
    return Message(role=role, content=content, **kw)


def test_plain_dialog_matches_published_layout():
    prompt = encode_dialog([msg("system", "You are a helpful assistant"), msg("user", "What is the color of the sky?")])
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful assistant<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "What is the color of the sky?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_plain_dialog_matches_the_tiny_tokenizers_chat_template():
    from llamaray.models.tiny import build_tokenizer

    messages = [msg("system", "Be brief."), msg("user", "hi"), msg("assistant", "hello"), msg("user", "bye")]
    template = build_tokenizer().apply_chat_template(
        [{"role": m.role.value, "content": m.content} for m in messages], add_generation_prompt=True, tokenize=False
    )
    assert encode_dialog(messages) == template


def test_builtin_tools_system_prompt():
    """Published example: brave_search and wolfram_alpha announced under Environment: ipython."""
    tools = [
        ToolDefinition(tool_name="web_search"),
        ToolDefinition(tool_name="math"),
        ToolDefinition(tool_name="code_interpreter"),
    ]
    prompt = encode_dialog(
        [
            msg("system", "You are a helpful assistant"),
            msg("user", "What is the current weather in Menlo Park, California?"),
        ],
        tools,
        today=TODAY,
    )
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\n"
        "Tools: brave_search, wolfram_alpha\n\n"
        "Cutting Knowledge Date: December 2023\n"
        "Today Date: 23 July 2024\n\n"
        "You are a helpful assistant<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "What is the current weather in Menlo Park, California?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_tool_call_ends_with_eom_and_result_goes_back_as_ipython():
    call = ToolCall(tool_name="web_search", arguments={"query": "current weather in Menlo Park, California"})
    assistant = msg("assistant", "", tool_calls=[call])
    assert encode_message(assistant) == (
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '<|python_tag|>brave_search.call(query="current weather in Menlo Park, California")<|eom_id|>'
    )
    tool = msg("tool", '{"temperature": "20C"}')
    assert encode_message(tool) == '<|start_header_id|>ipython<|end_header_id|>\n\n{"temperature": "20C"}<|eot_id|>'


def test_code_interpreter_call_is_python_tagged_code():
    call = ToolCall(tool_name="code_interpreter", arguments={"code": "print(2 ** 10)"})
    assert encode_message(msg("assistant", "", tool_calls=[call])).endswith("<|python_tag|>print(2 ** 10)<|eom_id|>")


def test_custom_tools_are_described_as_json_with_function_tag_format():
    tool = ToolDefinition(
        tool_name="spotify_trending_songs",
        description="Get top trending songs on Spotify",
        parameters={"n": {"param_type": "int", "description": "Number of trending songs to get", "required": True}},
    )
    prompt = encode_dialog([msg("user", "Use tools to get latest trending songs")], [tool], today=TODAY)
    assert "Use the function 'spotify_trending_songs' to: Get top trending songs on Spotify\n" in prompt
    assert (
        '{"name": "spotify_trending_songs", "description": "Get top trending songs on Spotify", "parameters": {"n": '
        in prompt
    )
    assert "<function=example_function_name>" in prompt
    assert "Environment: ipython" not in prompt  # only built-in tools need the ipython env
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_custom_tool_call_encodes_as_function_tag():
    call = ToolCall(tool_name="spotify_trending_songs", arguments={"n": "5"})
    assert encode_message(msg("assistant", "", tool_calls=[call])).endswith(
        '<function=spotify_trending_songs>{"n": "5"}</function><|eom_id|>'
    )


def test_final_assistant_message_is_a_prefill():
    messages = [msg("user", "hi"), msg("assistant", "Sure,")]
    prompt = encode_dialog(messages)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nSure,")
    assert prefill_text(messages) == "Sure,"
    closed = encode_dialog(messages, continue_final_message=False)
    assert closed.endswith("Sure,<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_tool_responses_on_a_message_follow_it_as_ipython():
    from llamaray.api.common import ToolResponse

    m = msg("user", "", tool_responses=[ToolResponse(tool_name="math", content="4")])
    assert encode_message(m).endswith("<|start_header_id|>ipython<|end_header_id|>\n\n4<|eot_id|>")


TOOL_DIALOG = [
    msg("user", "Weather in Paris?"),
    msg("assistant", "", tool_calls=[ToolCall(tool_name="get_weather", arguments={"city": "Paris"})]),
    msg("tool", "18C and sunny"),
    msg(
        "assistant",
        "",
        tool_calls=[ToolCall(tool_name="code_interpreter", arguments={"code": "print(1)"})],
        tool_responses=[ToolResponse(tool_name="code_interpreter", content="1")],
    ),
]
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": '<function=get_weather>{"city": "Paris"}</function>'},
    {"role": "ipython", "content": "18C and sunny"},
    {"role": "assistant", "content": "<|python_tag|>print(1)"},
    {"role": "ipython", "content": "1"},
]


def test_chat_turns_write_tool_calls_and_send_tool_output_as_ipython():
    assert chat_turns(TOOL_DIALOG) == TOOL_TURNS


def test_the_prompt_is_the_turns_in_the_llama_format():
    """Inference writes exactly the turns that training and reward scoring see."""
    prompt = encode_dialog(TOOL_DIALOG, continue_final_message=False)
    for turn in TOOL_TURNS:
        assert f"<|start_header_id|>{turn['role']}<|end_header_id|>\n\n{turn['content']}<|e" in prompt
    assert prompt.count("<|start_header_id|>") == len(TOOL_TURNS) + 1  # and the assistant's header


def test_training_examples_are_the_prompt_inference_writes():
    from llamaray.api.datasets import Dataset
    from llamaray.training.examples import dpo_examples, sft_examples

    dialog = [m.model_dump(mode="json") for m in TOOL_DIALOG[:3]] + [{"role": "assistant", "content": "It is sunny."}]
    *_, example = sft_examples(  # the tool call is trained on too: the answer is the last example
        Dataset(columns={"dialog": "dialog"}, content_url="file:///d.jsonl"), [{"dialog": dialog}]
    )
    assert example["prompt"] == encode_dialog(TOOL_DIALOG[:3])
    assert example["completion"] == "It is sunny.<|eot_id|>"
    columns = {"prompt": "dialog", "chosen": "text", "rejected": "text"}
    (pair,) = dpo_examples(
        Dataset(columns=columns, content_url="file:///d.jsonl"),
        [{"prompt": dialog[:3], "chosen": "a", "rejected": "b"}],
    )
    assert pair["prompt"] == encode_dialog(TOOL_DIALOG[:3])


def test_reward_scoring_reads_the_same_turns():
    import asyncio

    from llamaray.engines.protocol import SequenceDelta
    from llamaray.pipelines.sdg import scored_answers

    class Recorder:  # a ScoringClient that records what it is asked to score
        async def score(self, conversations):
            self.seen = conversations
            return [0.5] * len(conversations)

    recorder = Recorder()
    answers, scores = asyncio.run(scored_answers(recorder, [TOOL_DIALOG[:3]], [[SequenceDelta(0, "Sunny.", 2)]]))
    assert recorder.seen == [TOOL_TURNS[:3] + [{"role": "assistant", "content": "Sunny."}]]
    assert scores == [[0.5]] and answers[0][0].content == "Sunny."
