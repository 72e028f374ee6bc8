"""The agents' built-in tools and shields on their real parts: bubblewrap, SymPy, CodeShield with
semgrep, and a local HTTP server that answers in Brave Search's format."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from llamaray.agents.guard_format import guard_prompt, parse_verdict
from llamaray.agents.math_tool import MathError, evaluate
from llamaray.agents.sandbox import Sandbox
from llamaray.agents.shields import CodeGuardShield, scan_python
from llamaray.agents.tools import BuiltinTools
from llamaray.api.common import Message, ToolCall
from llamaray.config import AgentSettings, OutboundSettings, SandboxSettings, WebSearchSettings

SETTINGS = SandboxSettings(timeout_s=3, cpu_s=2, memory_mb=256, max_processes=8, max_output_bytes=10_000)


def run(code: str):
    return asyncio.run(Sandbox(SETTINGS).run(code))


def test_the_sandbox_runs_code_and_returns_its_output():
    result = run("import sys; print(6 * 7); print('oops', file=sys.stderr); open('f.txt', 'w').write('x')")
    assert result.ok and result.stdout == "42\n" and result.stderr == "oops\n"


@pytest.mark.parametrize(
    ("code", "expect"),
    [
        ("print(open('/etc/hostname').read())", "FileNotFoundError"),  # nothing of the host's outside /usr
        (f"print(os.listdir('{os.getcwd()}'))", "FileNotFoundError"),  # nor the platform's files
        ("open('/usr/evil', 'w')", "Read-only file system"),
        ("import socket; socket.create_connection(('127.0.0.1', 22), timeout=2)", "ConnectionRefusedError"),
        ("import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)", "Network is unreachable"),
    ],
)
def test_the_sandbox_keeps_code_off_files_and_the_network(code, expect):
    result = run("import os\n" + code)
    assert result.status == "completed" and result.exit_code != 0
    assert expect in result.stderr, result.stderr


def test_a_fork_bomb_is_capped():
    started = time.monotonic()
    result = run("import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)")
    assert "BlockingIOError" in result.stderr or "Resource temporarily unavailable" in result.stderr
    assert time.monotonic() - started < 5  # and its sleeping children die with the sandbox


def test_memory_output_and_time_are_bounded():
    assert "MemoryError" in run("x = bytearray(1 << 33)").stderr
    flood = run("while True: print('x' * 1000)")
    assert flood.status.startswith("stopped: output exceeded") and len(flood.stdout) <= SETTINGS.max_output_bytes
    started = time.monotonic()
    assert run("import time; time.sleep(100)").status == "stopped: timed out after 3 s"
    assert run("while True: pass").status.startswith("stopped:")
    assert time.monotonic() - started < 10


def test_math_evaluates_with_sympy_and_refuses_code():
    assert evaluate("6*7") == "42"
    assert evaluate("2^10") == "1024"
    assert evaluate("integrate(x**2, x)") == "x**3/3"
    assert evaluate("x**2 = 4") == "[-2, 2]"
    for bad in ("__import__('os').system('id')", "open('/etc/passwd')", "9**9**9", "factorial(10**9)", "(lambda: 1)()"):
        with pytest.raises(MathError):
            evaluate(bad)


class Brave(BaseHTTPRequestHandler):
    """Answers like api.search.brave.com's web search, checking its key header; `/moved`
    redirects to the search path."""

    requests = 0

    def do_GET(self):  # noqa: N802
        Brave.requests += 1
        url = urlparse(self.path)
        if url.path.endswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "/res/v1/web/search?" + url.query)
            self.end_headers()
            return
        if self.headers.get("X-Subscription-Token") != "test-key":
            self.send_response(401)
            self.end_headers()
            return
        q = parse_qs(url.query)["q"][0]
        body = {
            "type": "search",
            "query": {"original": q},
            "web": {
                "type": "search",
                "results": [
                    {"title": f"About {q}", "url": "https://example.org/a", "description": "First.", "age": "1 day"},
                    {"title": "Second", "url": "https://example.org/b", "description": "Second."},
                ],
            },
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def brave_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Brave)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/res/v1/web/search"
    server.shutdown()


def tools(outbound: OutboundSettings | None = None, **web) -> BuiltinTools:
    settings = AgentSettings(sandbox=SETTINGS, web_search=WebSearchSettings(**web))
    return BuiltinTools(settings, outbound or LOCAL_PROVIDER)


def call(t: BuiltinTools, name: str, **arguments) -> str:
    return asyncio.run(t.run(ToolCall(tool_name=name, arguments=arguments))).content


# The test's provider listens on loopback, which the outbound policy refuses unless allowed.
LOCAL_PROVIDER = OutboundSettings(allow_http=True, allow_hosts=["127.0.0.1"])


def test_web_search_speaks_brave(brave_url, monkeypatch):
    monkeypatch.delenv("BRAVE_SEARCH_API_KEY", raising=False)
    found = json.loads(call(tools(api_key="test-key", url=brave_url), "web_search", query="llamas"))
    assert found["top_k"][0] == {"title": "About llamas", "url": "https://example.org/a", "description": "First."}
    assert "HTTP 401" in call(tools(api_key="wrong", url=brave_url), "web_search", query="llamas")
    assert "no Brave Search API key" in call(tools(url=brave_url), "web_search", query="llamas")


def test_web_search_goes_out_under_the_outbound_policy(brave_url, monkeypatch):
    """A provider on a private address is refused unless the policy names it, and a redirect
    (which would carry the key elsewhere) is not followed."""
    monkeypatch.delenv("BRAVE_SEARCH_API_KEY", raising=False)
    Brave.requests = 0
    refused = call(tools(OutboundSettings(allow_http=True), api_key="test-key", url=brave_url), "web_search", query="x")
    assert "loopback" in refused and Brave.requests == 0
    redirected = call(tools(api_key="test-key", url=brave_url.replace("/search", "/moved")), "web_search", query="x")
    assert "redirects" in redirected and Brave.requests == 1


def test_tools_answer_errors_as_text():
    t = tools()
    assert call(t, "math", query="6*7") == "42"
    assert call(t, "code_interpreter", code="print(6 * 7)") == "completed\n[stdout]\n42\n[/stdout]"
    assert call(t, "code_interpreter", code="1/0").startswith("error: exit code 1\n[stderr]")
    assert "no image provider" in call(t, "image_gen", query="a llama")
    assert call(t, "math", query="open(1)").startswith("error: unknown function")
    flood = call(tools(), "code_interpreter", code="print('x' * 20000)")
    assert len(flood) <= 8000 and "characters cut ..." in flood and flood.endswith("x\n[/stdout]")


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("x = eval(input())", "eval"),
        ("import os\nos.system('ls ' + name)", "os-system"),
        ("import pickle\nobj = pickle.loads(data)", "pickle"),
        ("import subprocess\nsubprocess.run(cmd, shell=True)", "shell"),
    ],
)
def test_codeshield_flags_insecure_python(code, rule):
    issues = asyncio.run(scan_python(code))
    assert any(rule in issue["rule"] for issue in issues), issues


def test_code_guard_passes_plain_code_and_reads_tool_calls():
    shield = CodeGuardShield()
    clean = Message(
        role="assistant",
        content="",
        tool_calls=[ToolCall(tool_name="code_interpreter", arguments={"code": "print(6 * 7)"})],
    )
    assert asyncio.run(shield.check([clean])) is None
    dirty = clean.model_copy(
        update={"tool_calls": [ToolCall(tool_name="code_interpreter", arguments={"code": "eval(s)"})]}
    )
    assert asyncio.run(shield.check([dirty])).violation_type == "insecure_code"


def test_llama_guard_prompt_and_verdicts():
    prompt = guard_prompt(
        [Message(role="user", content="hi"), Message(role="assistant", content="hello")], ["S1", "S9"]
    )
    assert "S1: Violent Crimes.\nS9: Indiscriminate Weapons.\n<END UNSAFE" in prompt
    assert "User: hi\n\nAgent: hello" in prompt and "ONLY THE LAST Agent message" in prompt
    assert parse_verdict("safe") is None
    assert parse_verdict("unsafe\nS9").violation_type == "S9"
    assert parse_verdict("unsafe\nS2", ["S9"]) is None  # a category this shield does not check
    assert parse_verdict("unsafe").violation_type == "unknown"
    assert parse_verdict("I think so").violation_type == "unreadable_guard_answer"  # fails closed
