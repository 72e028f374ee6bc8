"""Fetching what a request names: a loopback listener stands for everything inside the cluster
(the dashboard, the metadata service), and no URL form reaches it; what is allowed is capped in
size and time, and errors do not echo what came back."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llamaray.config import OutboundSettings
from llamaray.datasets.readers import path_inside, read_rows
from llamaray.errors import InvalidRequestError
from llamaray.security.outbound import check_public_address, fetch_public


class Listener:
    """A local HTTP server that counts the requests it gets and answers by path."""

    def __init__(self, routes: dict) -> None:
        self.hits: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                listener.hits.append(self.path)
                status, headers, body = routes.get(self.path.split("?")[0], (404, {}, b"no"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if callable(body):
                    self.end_headers()
                    body(self.wfile)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def inside():
    """Something inside the cluster that no request may reach."""
    listener = Listener({"/data.jsonl": (200, {}, b'{"secret": 1}\n')})
    yield listener
    listener.close()


def loopback_forms(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/data.jsonl",
        f"http://2130706433:{port}/data.jsonl",  # decimal
        f"http://0x7f000001:{port}/data.jsonl",  # hex
        f"http://127.1:{port}/data.jsonl",  # short
        f"http://[::ffff:127.0.0.1]:{port}/data.jsonl",  # IPv6-mapped
        f"http://localhost:{port}/data.jsonl",  # a name that resolves to loopback
        f"http://[::1]:{port}/data.jsonl",
    ]


@pytest.mark.parametrize("form", range(7))
def test_no_url_form_reaches_loopback(inside, form):
    url = loopback_forms(inside.port)[form]
    with pytest.raises(InvalidRequestError) as refused:
        read_rows(url, [], "content_url", OutboundSettings(allow_http=True))
    assert "refused" in refused.value.message or "does not resolve" in refused.value.message
    assert refused.value.param == "content_url"
    assert inside.hits == []


@pytest.mark.parametrize(
    ("address", "public"),
    [("8.8.8.8", True), ("2606:4700::1111", True), ("10.0.0.1", False), ("172.16.0.1", False),
     ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
     ("::ffff:10.0.0.1", False), ("fd00::1", False), ("fe80::1", False), ("224.0.0.1", False)],
)  # fmt: skip
def test_only_public_addresses_pass(address, public):
    assert (check_public_address(address) is None) is public


def test_https_only_by_default_and_no_credentials(inside):
    with pytest.raises(InvalidRequestError, match="https"):
        fetch_public(f"http://example.com:{inside.port}/x", OutboundSettings(), "u")
    with pytest.raises(InvalidRequestError, match="credentials"):
        fetch_public("https://user:pw@example.com/x", OutboundSettings(), "u")
    assert inside.hits == []


def test_every_redirect_is_checked_again(inside):
    """An allowed host (an internal mirror, say) that redirects to loopback or to another
    scheme: the redirect is refused before anything is sent there."""
    mirror = Listener(
        {
            "/to-inside": (302, {"Location": f"http://127.0.0.1:{inside.port}/data.jsonl"}, b""),
            "/to-file": (301, {"Location": "file:///etc/passwd"}, b""),
            "/ok": (200, {}, b'{"a": 1}\n'),
        }
    )
    try:
        policy = OutboundSettings(allow_http=True, allow_hosts=[f"127.0.0.1:{mirror.port}"])
        assert fetch_public(f"http://127.0.0.1:{mirror.port}/ok", policy, "u") == b'{"a": 1}\n'
        with pytest.raises(InvalidRequestError, match="loopback"):
            fetch_public(f"http://127.0.0.1:{mirror.port}/to-inside", policy, "u")
        with pytest.raises(InvalidRequestError, match="file URL"):
            fetch_public(f"http://127.0.0.1:{mirror.port}/to-file", policy, "u")
        assert inside.hits == []
    finally:
        mirror.close()


def test_a_huge_and_a_slow_response_are_cut_and_nothing_remote_is_echoed():
    def drip(out) -> None:
        try:
            for _ in range(100):
                out.write(b"x")
                out.flush()
                time.sleep(0.1)
        except BrokenPipeError:  # the fetch gave up, as it should
            pass

    server = Listener(
        {
            "/huge": (200, {}, b"x" * (4 << 20)),
            "/slow": (200, {"Content-Length": "100"}, drip),
            "/secret-error": (500, {}, b"TOKEN=hunter2"),
        }
    )
    try:
        policy = OutboundSettings(
            allow_http=True, allow_hosts=[f"127.0.0.1:{server.port}"], max_bytes=1 << 20, timeout_s=1.5
        )
        with pytest.raises(InvalidRequestError, match="larger than"):
            fetch_public(f"http://127.0.0.1:{server.port}/huge", policy, "u")
        started = time.monotonic()
        with pytest.raises(InvalidRequestError, match="longer than"):
            fetch_public(f"http://127.0.0.1:{server.port}/slow", policy, "u")
        assert time.monotonic() - started < 4
        with pytest.raises(InvalidRequestError) as error:
            fetch_public(f"http://127.0.0.1:{server.port}/secret-error?key=abc", policy, "u")
        assert "500" in error.value.message and "hunter2" not in error.value.message
        assert "abc" not in error.value.message  # nor the query, which may carry a token
    finally:
        server.close()


@pytest.mark.parametrize(
    "url", ["file://evil.example/data/x.jsonl", "file:///data/x%00.jsonl", "file:///data/../etc/passwd"]
)
def test_file_urls_with_a_host_a_nul_or_a_way_out_are_refused(tmp_path, url):
    with pytest.raises(InvalidRequestError):
        path_inside(url.replace("/data", str(tmp_path)), [tmp_path], "content_url")
