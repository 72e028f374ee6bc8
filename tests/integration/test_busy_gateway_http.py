"""Slow work never freezes the gateway: `/health` answers at once while a dataset URL drips one
byte at a time, a 10 MB PDF is extracted and a long prompt is prefilled, all at the same time."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.integration.conftest import MODEL_ID
from tests.integration.test_memory_banks_http import pdf_file

DRIP_S = 12  # how long the slow host takes to send its dataset


class Drip(BaseHTTPRequestHandler):
    """A host that sends a JSONL dataset one byte every tenth of a second."""

    def do_GET(self):  # noqa: N802
        body = b'{"text": "' + b"a" * (DRIP_S * 10) + b'"}\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.1)

    def log_message(self, *args):
        pass


@pytest.fixture()
def slow_host():
    server = ThreadingHTTPServer(("127.0.0.2", 0), Drip)  # the test config allows 127.0.0.2 (outbound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.2:{server.server_port}/rows.jsonl"
    server.shutdown()


def drawing_pdf(megabytes: int) -> bytes:
    """A one-page PDF whose content stream is `megabytes` of line drawing: slow to extract, and
    without a word of text in it."""
    stream = b"0 0 m 100 100 l S\n" * (megabytes * (1 << 20) // 18)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    return pdf_file(objects)


def test_health_stays_fast_while_slow_work_is_in_flight(platform_url, slow_host):
    run = uuid.uuid4().hex[:8]  # names of this run's dataset and bank
    pdf = base64.b64encode(drawing_pdf(10)).decode()
    document = {"uuid": "drawing", "content": pdf, "mime_type": "application/pdf"}
    long_prompt = "word " * 900  # about 1,800 tokens of the 2,048 the tiny model reads
    huge_prompt = "word " * 200_000  # 1 MB: tokenised (off the replica's loop), then refused as too long

    with httpx.Client(base_url=platform_url, timeout=180) as client, ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        slow = [
            pool.submit(
                client.post,
                "/datasets/create",
                json={"uuid": f"dripped-{run}", "dataset": {"columns": {"text": "text"}, "content_url": slow_host}},
            ),
            pool.submit(
                client.post,
                "/memory_banks/create",
                params={"bank_uuid": f"pdf-{run}", "bank_name": "p"},
                json=[document],
            ),
            pool.submit(
                client.post,
                "/inference/completion",
                json={"model": MODEL_ID, "content": long_prompt, "max_tokens": 1},
            ),
            pool.submit(
                client.post,
                "/inference/completion",
                json={"model": MODEL_ID, "content": huge_prompt, "max_tokens": 1},
            ),
        ]
        latencies, ready = [], []
        while not all(f.done() for f in slow) and time.monotonic() - started < 150:
            asked = time.monotonic()
            assert client.get("/health").status_code == 200
            latencies.append(time.monotonic() - asked)
            asked = time.monotonic()
            client.get("/ready")  # reaches each engine replica's loop: a prefill being tokenised there
            ready.append(time.monotonic() - asked)
            time.sleep(0.2)
        answers = [f.result() for f in slow]
    assert answers[0].status_code == 200, answers[0].text  # the dataset arrived, slowly
    assert time.monotonic() - started >= DRIP_S
    assert answers[1].status_code == 400 and "no text" in answers[1].json()["error"]["message"]
    assert answers[2].status_code == 200, answers[2].text
    assert answers[3].status_code == 400 and answers[3].json()["error"]["param"] == "content", answers[3].text
    latencies.sort()
    ready.sort()
    print(
        f"\n/health while busy: {len(latencies)} asks, median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; /ready median {ready[len(ready) // 2] * 1000:.0f} ms, "
        f"max {ready[-1] * 1000:.0f} ms"
    )
    assert latencies[-1] < 2.5, latencies[-5:]
    assert ready[-1] < 2.5, ready[-5:]  # the engine replicas answer too: a 1 MB prompt is tokenised off their loop
