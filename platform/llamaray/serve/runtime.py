"""How the Ray cluster under the platform should run Serve.

`RAY_SERVE_THROUGHPUT_OPTIMIZED=1` is Ray Serve's own preset for throughput: ingress replicas
listen for HTTP themselves (direct ingress), handles talk gRPC, and user code shares the
replica's event loop. On the 2-core machines it lifted /v1 throughput from 0.59 to 0.74 of vLLM's
own server (benchmarks/serving.py). Ray reads these when its processes start, so they must be in
the environment of whatever starts Ray: `make serve` exports them, and so do the tests and
benchmarks.

`RAY_SERVE_ENABLE_HA_PROXY=1`: Serve's HAProxy on the HTTP port in place of the Python proxy.
With the chat engine in the gateway replica (`gateway.engine_model`) it leaves one Python process
between a client and the engine, as with `vllm serve` (streaming at concurrency 32 / 128 went
from 0.73 / 0.69 of it to 1.14 / 0.99, `benchmarks/serving.py`). HAProxy runs through `llamaray-haproxy`
(`llamaray.serve.haproxy`: no `splice()`, or a client that leaves a long request is not seen to
leave), so `RAY_SERVE_HAPROXY_BINARY_PATH` names that launcher of the environment Ray runs in;
`serve_env()` adds it for a Python process that starts Ray. Under HAProxy, Serve binds the
ingress replicas' own HTTP ports to the node's address, not loopback, so HAProxy on other nodes
reaches them: the gateway's access policy guards them as it guards the proxy's port (API keys,
or, without keys, loopback clients only).

Its gRPC handles take at most 4 MiB per message into a replica by default: a memory bank insert
of one 10 MB document (`memory.max_document_bytes`) failed between the gateway and the memory
server. `RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH` lifts that above the largest body the gateway
accepts (`limits.max_body_bytes`, 32 MiB).

`RAY_worker_niceness=0`: Ray's workers run at nice 15 otherwise (see `PLATFORM_PRIORITY_ENV`).
"""

import sys
from pathlib import Path

from llamaray.config import PLATFORM_PRIORITY_ENV
from llamaray.serve.haproxy import BINARY_ENV

GRPC_MESSAGE_BYTES = 128 << 20
SERVE_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(GRPC_MESSAGE_BYTES),
    **PLATFORM_PRIORITY_ENV,  # set where Ray starts, it reaches Serve's proxy too (no runtime_env there)
}


def serve_env() -> dict[str, str]:
    """`SERVE_ENV` and the HAProxy launcher beside this Python (a virtual environment's `bin/`),
    for a process that starts Ray itself: the tests and the benchmarks."""
    launcher = Path(sys.executable).parent / "llamaray-haproxy"
    if not launcher.is_file():
        raise RuntimeError(f"{launcher} is missing: install the platform into this environment (pip install -e .)")
    return {**SERVE_ENV, BINARY_ENV: str(launcher)}


def replica_id() -> str | None:
    """This Serve replica's id: what `/ready` tells replicas apart by (a pid would say more
    about the host than a caller needs)."""
    from ray import serve

    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # not in a replica (an engine in a test or a benchmark)
        return None
