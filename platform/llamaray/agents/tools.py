"""The built-in tools an agent runs server-side, each answering a `ToolResponse`.

A tool never raises into the turn: a failure, a timeout or a missing provider is the text of the
tool response, which the model reads (as Llama Stack's agents did), and the turn goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx

from llamaray.agents.math_tool import MathError, evaluate
from llamaray.agents.sandbox import Sandbox, SandboxResult, SandboxUnavailable
from llamaray.api.common import BuiltinTool, ToolCall, ToolResponse
from llamaray.config import AgentSettings, OutboundSettings, WebSearchSettings
from llamaray.errors import InvalidRequestError
from llamaray.security.outbound import fetch_public

BUILTINS = {tool.value for tool in BuiltinTool}


def interpreter_output(result: SandboxResult) -> str:
    """What the model reads back from the code interpreter (the tiny agent model is taught
    this exact layout by `llamaray.models.teach`)."""
    status = result.status
    if status == "completed" and result.exit_code:
        status = f"error: exit code {result.exit_code}"
    parts = [status]
    if result.stdout:
        parts.append(f"[stdout]\n{result.stdout.rstrip()}\n[/stdout]")
    if result.stderr:
        parts.append(f"[stderr]\n{result.stderr.rstrip()}\n[/stderr]")
    return "\n".join(parts)


def shorten(text: str, limit: int) -> str:
    """`text` within `limit` characters: its head and tail, the middle cut and said so."""
    if len(text) <= limit:
        return text
    keep = (limit - 40) // 2
    return f"{text[:keep]}\n[... {len(text) - 2 * keep} characters cut ...]\n{text[-keep:]}"


class BraveSearch:
    """Brave's web search API (`GET /res/v1/web/search?q=`, key in `X-Subscription-Token`);
    its `web.results` become a short JSON list of title, url and description.

    The call goes out under the platform's outbound policy like any fetch a request causes (the
    query is the model's, so the request's): public addresses only unless `outbound` allows the
    provider, no redirects (the key must not follow one), a byte cap and the tool's deadline."""

    MAX_BYTES = 4 << 20

    def __init__(self, settings: WebSearchSettings, outbound: OutboundSettings) -> None:
        self.settings = settings
        self.api_key = settings.api_key or os.environ.get(settings.api_key_env)
        self.policy = outbound.model_copy(
            update={
                "timeout_s": settings.timeout_s,
                "max_bytes": min(outbound.max_bytes, self.MAX_BYTES),
                "max_redirects": 0,
            }
        )

    async def search(self, query: str) -> str:
        if not self.api_key:
            return (
                "error: web_search has no Brave Search API key "
                f"(set agents.web_search.api_key or the {self.settings.api_key_env} environment variable)"
            )
        headers = {"Accept": "application/json", "X-Subscription-Token": self.api_key}
        url = str(httpx.URL(self.settings.url, params={"q": query, "count": self.settings.count}))
        try:
            body = await asyncio.to_thread(fetch_public, url, self.policy, "web_search", headers)
        except InvalidRequestError as exc:
            return f"error: the search provider could not be asked: {exc.message}"
        try:
            results = json.loads(body).get("web", {}).get("results", [])
        except (ValueError, AttributeError):
            return "error: the search provider's answer was not Brave's JSON"
        top = [
            {"title": r.get("title", ""), "url": r.get("url", ""), "description": r.get("description", "")}
            for r in results[: self.settings.count]
            if isinstance(r, dict)
        ]
        return json.dumps({"query": query, "top_k": top})


class BuiltinTools:
    """Runs the four built-in tools; `code_interpreter` in the sandbox."""

    def __init__(self, settings: AgentSettings, outbound: OutboundSettings | None = None) -> None:
        self.settings = settings
        self.sandbox = Sandbox(settings.sandbox)
        self.search = BraveSearch(settings.web_search, outbound or OutboundSettings())

    async def run(self, call: ToolCall) -> ToolResponse:
        try:
            text = await asyncio.wait_for(self._run(call), self.settings.tool_timeout_s)
        except asyncio.TimeoutError:
            text = f"error: {call.tool_name} timed out after {self.settings.tool_timeout_s:g} s"
        return ToolResponse(tool_name=call.tool_name, content=shorten(text, self.settings.max_tool_response_chars))

    async def _run(self, call: ToolCall) -> str:
        args = call.arguments
        if call.tool_name == BuiltinTool.code_interpreter.value:
            try:
                return interpreter_output(await self.sandbox.run(_text_arg(args, "code")))
            except SandboxUnavailable as exc:
                return f"error: {exc}"
        if call.tool_name == BuiltinTool.math.value:
            try:
                return await asyncio.to_thread(evaluate, _text_arg(args, "query"))
            except MathError as exc:
                return f"error: {exc}"
        if call.tool_name == BuiltinTool.web_search.value:
            return await self.search.search(_text_arg(args, "query"))
        if call.tool_name == BuiltinTool.image_gen.value:
            return "error: no image provider is configured on this platform, so image_gen cannot make images"
        return f"error: {call.tool_name!r} is not a built-in tool"


def _text_arg(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if value is None and len(args) == 1:  # the model named the argument otherwise
        value = next(iter(args.values()))
    return value if isinstance(value, str) else json.dumps(value)
