"""What the gateway's `RequestGuard` finds in a JSON body before any route parses it."""

import json

import pytest

from llamaray.serve.request_guard import SUSPECT, NotANumber, bad_field


def parsed(body: str):
    return json.loads(body, parse_constant=lambda _: NotANumber())


@pytest.mark.parametrize(
    "body,path",
    [
        ('{"messages": [{"role": "user", "content": "a\\ud800b"}]}', ("messages", 0, "content")),
        ('{"input": ["ok", "\\udc00"]}', ("input", 1)),
        ('{"metadata": {"\\ud83d": 1}}', ("metadata", "?")),  # a key is named with "?" for the surrogate
        ('{"temperature": NaN}', ("temperature",)),
        ('{"x": [1, -Infinity]}', ("x", 1)),
        ('"\\udfff"', ()),
    ],
)
def test_the_field_that_is_not_text_or_not_a_number_is_named(body, path):
    assert SUSPECT.search(body.encode())
    assert bad_field(parsed(body)) == path


@pytest.mark.parametrize(
    "body", ['{"content": "\\ud83d\\ude00 fine"}', '{"text": "NaN is a word"}', '{"a": "\\u00e9"}']
)
def test_valid_text_and_numbers_pass(body):
    assert bad_field(parsed(body)) is None
