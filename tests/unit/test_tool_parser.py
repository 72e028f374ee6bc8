"""Tool calls parsed out of the published Llama 3.1 answer formats."""

import time

import pytest

from llamaray.api.common import ToolCall
from llamaray.inference.chat_format import encode_tool_call
from llamaray.inference.tool_parser import parse_tool_calls
from llamaray.inference.tool_stream import ToolCallStream


def test_builtin_brave_search_call():
    out = parse_tool_calls(
        '<|python_tag|>brave_search.call(query="current weather in Menlo Park, California")<|eom_id|>'
    )
    assert out.tool_calls == [
        ToolCall(tool_name="web_search", arguments={"query": "current weather in Menlo Park, California"})
    ]
    assert out.content == ""


def test_builtin_wolfram_alpha_call_maps_to_math():
    out = parse_tool_calls('<|python_tag|>wolfram_alpha.call(query="solve x^3 - 4x^2 + 6x - 24 = 0")')
    assert out.tool_calls == [ToolCall(tool_name="math", arguments={"query": "solve x^3 - 4x^2 + 6x - 24 = 0"})]


def test_builtin_call_followed_by_other_text():
    out = parse_tool_calls('<|python_tag|>brave_search.call(query="a (b) c")trailing')
    assert out.tool_calls == [ToolCall(tool_name="web_search", arguments={"query": "a (b) c"})]


def test_function_tag_call():
    out = parse_tool_calls('<function=spotify_trending_songs>{"n": "5"}</function><|eom_id|>')
    assert out.tool_calls == [ToolCall(tool_name="spotify_trending_songs", arguments={"n": "5"})]


def test_function_tag_with_text_around_it():
    out = parse_tool_calls('Let me check. <function=get_weather>{"city": "Paris"}</function>')
    assert out.tool_calls == [ToolCall(tool_name="get_weather", arguments={"city": "Paris"})]
    assert out.content == "Let me check."


def test_json_call_published_custom_tool_format():
    out = parse_tool_calls(
        '{"name": "get_current_conditions", '
        '"parameters": {"location": "San Francisco, CA", "unit": "Fahrenheit"}}<|eot_id|>'
    )
    assert out.tool_calls == [
        ToolCall(tool_name="get_current_conditions", arguments={"location": "San Francisco, CA", "unit": "Fahrenheit"})
    ]


def test_python_tagged_json_call():
    out = parse_tool_calls('<|python_tag|>{"type": "function", "name": "trending_songs", "parameters": {"n": 10}}')
    assert out.tool_calls == [ToolCall(tool_name="trending_songs", arguments={"n": 10})]


def test_other_python_tagged_text_is_code_interpreter_input():
    out = parse_tool_calls("<|python_tag|>import math\nprint(math.sqrt(16))<|eom_id|>")
    assert out.tool_calls == [
        ToolCall(tool_name="code_interpreter", arguments={"code": "import math\nprint(math.sqrt(16))"})
    ]


@pytest.mark.parametrize("text", ["The sky is blue.", "{not json", '{"a": 1}', "brave_search is a tool"])
def test_plain_text_has_no_tool_calls(text):
    out = parse_tool_calls(text + "<|eot_id|>")
    assert out.tool_calls == []
    assert out.content == text


@pytest.mark.parametrize(
    "call",
    [
        ToolCall(tool_name="web_search", arguments={"query": "llama 3.1"}),
        ToolCall(tool_name="math", arguments={"query": "2+2"}),
        ToolCall(tool_name="code_interpreter", arguments={"code": "print(1)"}),
        ToolCall(tool_name="get_weather", arguments={"city": "Paris", "days": 3}),
    ],
)
def test_encode_then_parse_round_trips(call):
    assert parse_tool_calls(encode_tool_call(call)).tool_calls == [call]


def stream(deltas):
    s = ToolCallStream()
    shown = "".join(s.feed(d) for d in deltas)
    rest, calls = s.finish()
    return shown, rest, calls


def test_stream_passes_plain_text_through():
    shown, rest, calls = stream(["Hello", " wor", "ld<", "3"])
    assert shown + rest == "Hello world<3"
    assert calls == []


def test_stream_holds_back_a_function_call():
    shown, rest, calls = stream(["Sure. ", "<func", "tion=get_weather>", '{"city": ', '"Paris"}</function>'])
    assert shown == "Sure. "
    assert rest == ""
    assert calls == [ToolCall(tool_name="get_weather", arguments={"city": "Paris"})]


def test_stream_holds_back_python_tagged_builtin_call():
    shown, rest, calls = stream(["<|python_tag|>", "brave_search.call(", 'query="x")', "<|eom_id|>"])
    assert shown == ""
    assert calls == [ToolCall(tool_name="web_search", arguments={"query": "x"})]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000,  # a prefill the JSON parser would recurse on
        '{"name": "f", "parameters": ' + "[" * 5000 + "]" * 5000 + "}",
        "<function=f>" + "[" * 5000 + "</function>",
        "brave_search.call(query=" + "(" * 5000,
        "brave_search.call(query=" + "x) " * 20000,  # every `)` a candidate end, none a call
        "<function=f>{} " * 20000,  # open tags never closed
        "<|python_tag|>wolfram_alpha.call(query='" + ")" * 20000,
    ],
)
def test_parser_is_linear_and_never_raises_on_hostile_output(text):
    started = time.perf_counter()
    parsed = parse_tool_calls(text)
    assert time.perf_counter() - started < 1.0
    assert isinstance(parsed.content, str)


def test_stream_of_many_small_deltas_is_linear():
    stream = ToolCallStream()
    started = time.perf_counter()
    shown = "".join(stream.feed("word ") for _ in range(50_000))
    assert time.perf_counter() - started < 2.0
    assert shown == "word " * 50_000 and stream.finish() == ("", [])


def test_builtin_call_with_a_parenthesis_in_a_string_argument():
    parsed = parse_tool_calls('brave_search.call(query="why (really)?")')
    assert parsed.tool_calls[0].arguments == {"query": "why (really)?"}


def test_hermes_tool_call_blocks_of_chat_templates():
    """Qwen's and SmolLM2's templates ask for `<tool_call>{json}</tool_call>`, one block a call."""
    out = parse_tool_calls(
        'Checking both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}'  # stopped before its close
    )
    assert out.content == "Checking both."
    assert out.tool_calls == [
        ToolCall(tool_name="get_weather", arguments={"city": "Paris"}),
        ToolCall(tool_name="get_weather", arguments={"city": "Rome"}),
    ]
    broken = parse_tool_calls("<tool_call>not json</tool_call>")  # not a call: the text stays
    assert broken.tool_calls == [] and "not json" in broken.content
    many = "<tool_call>" * 50_000
    started = time.perf_counter()
    assert parse_tool_calls(many).tool_calls == []
    assert time.perf_counter() - started < 1.0


def test_a_streamed_hermes_call_is_held_back_and_parsed():
    stream = ToolCallStream()
    shown = "".join(stream.feed(d) for d in ["Sure. <tool", '_call>{"name": "f", ', '"arguments": {}}</tool_call>'])
    rest, calls = stream.finish()
    assert (shown, rest) == ("Sure. ", "")  # the text before the tag, never a piece of the call
    assert calls == [ToolCall(tool_name="f", arguments={})]
