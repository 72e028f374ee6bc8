"""Streaming text that may turn into a tool call.

Plain text is passed on as it arrives; from the point where the output could be a tool call
(the python tag, a `<function=` or `<tool_call>` tag, or an answer that opens with `{`) it is held back and
parsed when generation ends, so a client never sees half a tool call as text.
"""

from __future__ import annotations

from llamaray.api.common import ToolCall
from llamaray.inference.chat_format import PYTHON_TAG
from llamaray.inference.tool_parser import TOOL_CALL_OPEN, parse_tool_calls, strip_special_tokens

FUNCTION_OPEN = "<function="
MARKERS = (PYTHON_TAG, FUNCTION_OPEN, TOOL_CALL_OPEN)


class ToolCallStream:
    def __init__(self) -> None:
        self.text = ""
        self.sent = 0  # characters of `text` already shown
        self.in_tool_call = False
        self.searched = 0  # `text` before this holds no marker: each delta is searched once
        self.answer_started = False  # a character other than whitespace has come

    def feed(self, delta: str) -> str:
        """The part of the output that is safe to show now."""
        self.text += strip_special_tokens(delta)
        if self.in_tool_call:
            return ""
        start = self._tool_start()
        if start is not None:
            self.in_tool_call = True
            end = start
        else:
            end = len(self.text) - self._marker_prefix_at_end()
        out = self.text[self.sent : end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """Text still to show, and the tool calls, once the model has stopped."""
        rest = self.text[self.sent :]
        self.sent = len(self.text)
        if not self.in_tool_call:
            return rest, []
        parsed = parse_tool_calls(rest)
        return parsed.content, parsed.tool_calls

    def _tool_start(self) -> int | None:
        if not self.answer_started:
            stripped = self.text.lstrip()
            if stripped:
                self.answer_started = True
                if stripped.startswith("{"):
                    return len(self.text) - len(stripped)
        # A marker may straddle the previous delta's end: search from a marker's length before it.
        start = max(0, self.searched - max(len(marker) for marker in MARKERS))
        self.searched = len(self.text)
        found = [i for i in (self.text.find(marker, start) for marker in MARKERS) if i >= 0]
        return min(found) if found else None

    def _marker_prefix_at_end(self) -> int:
        """How many trailing characters may still grow into a marker."""
        sizes = [
            size
            for marker in MARKERS
            for size in range(1, min(len(marker) - 1, len(self.text)) + 1)
            if self.text.endswith(marker[:size])
        ]
        return max(sizes, default=0)
