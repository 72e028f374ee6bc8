"""`llamaray-haproxy`: the HAProxy it starts ends with the process that started it (Serve's proxy
actor), so a killed cluster leaves nothing on the HTTP port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

LAUNCHER = Path(sys.executable).parent / "llamaray-haproxy"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_haproxy_ends_when_the_process_that_started_it_is_killed(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        textwrap.dedent(
            """\
            defaults
                mode http
                timeout connect 1s
                timeout client 1s
                timeout server 1s
            frontend front
                bind {socket}
            """
        ).format(socket=tmp_path / "front.sock")
    )
    parent = subprocess.Popen(  # stands in for Serve's proxy actor: starts HAProxy, then waits
        [
            sys.executable,
            "-c",
            f"import subprocess, time; p = subprocess.Popen([{str(LAUNCHER)!r}, '-db', '-f', {str(config)!r}]);"
            " print(p.pid, flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    haproxy = int(parent.stdout.readline())
    try:
        time.sleep(1.0)
        assert _alive(haproxy), "HAProxy did not start"
        parent.send_signal(signal.SIGKILL)  # as `ray stop --force` kills a worker
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(haproxy) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(haproxy), "HAProxy outlived its parent"
    finally:
        parent.kill()
        if _alive(haproxy):
            os.kill(haproxy, signal.SIGKILL)
