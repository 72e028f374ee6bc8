"""Runs model-written Python where it can do no harm: bubblewrap plus rlimits.

bubblewrap gives the process new namespaces (no network: its only interface is a loopback of
its own; its own pids, so killing it kills every child) and a root of read-only system files plus
one writable scratch directory, removed afterwards. rlimits (set by `prlimit`) bound CPU time, address space,
process count, open files and file size; the wall clock and the output size are bounded here,
by killing the process tree. RLIMIT_NPROC counts a user's processes and does not bind root, so a
platform running as root runs the sandbox as an unprivileged uid of its own.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llamaray.config import SandboxSettings

SANDBOX_UID_RANGE = (200_000, 260_000)  # uids no account uses; one per run when running as root
READ_CHUNK = 4096


@dataclass
class SandboxResult:
    """What a run did. `status` is `completed` or why it was stopped."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == "completed" and self.exit_code == 0


class SandboxUnavailable(RuntimeError):
    pass


class Sandbox:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings

    def check(self) -> None:
        """Raises `SandboxUnavailable` saying what is missing on this machine."""
        for tool, package in (("bwrap", "bubblewrap"), ("prlimit", "util-linux"), ("setpriv", "util-linux")):
            if shutil.which(tool) is None:
                raise SandboxUnavailable(
                    f"the code interpreter's sandbox needs `{tool}` (Debian: {package}), not installed"
                )
        if not Path(self.settings.python).is_file():
            raise SandboxUnavailable(f"the sandbox's python {self.settings.python} does not exist")

    async def run(self, code: str) -> SandboxResult:
        self.check()
        scratch = Path(tempfile.mkdtemp(prefix="llamaray-sandbox-"))
        uid = random.randint(*SANDBOX_UID_RANGE) if os.geteuid() == 0 else None
        try:
            if uid is not None:
                os.chown(scratch, uid, uid)
            # setpriv and prlimit rather than Popen's user= and preexec_fn: uvloop (Serve's event
            # loop) supports neither, and a preexec_fn is unsafe in a threaded process.
            switch_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid is not None else []
            process = await asyncio.create_subprocess_exec(
                *switch_user,
                "prlimit",
                *self._limits(as_root=uid is not None),
                "--",
                *self._command(scratch, code),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed whole
            )
            return await self._collect(process)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _command(self, scratch: Path, code: str) -> list[str]:
        binds = ["--ro-bind", "/usr", "/usr"]
        for top in ("lib", "lib64", "bin", "sbin", "lib32"):  # merged /usr: links; else bind them
            path = Path("/") / top
            if path.is_symlink():
                binds += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                binds += ["--ro-bind", str(path), str(path)]
        return [
            "bwrap",
            "--unshare-all",  # network, pids, ipc, uts, cgroup and user namespaces
            "--die-with-parent",
            "--new-session",
            *binds,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--bind",
            str(scratch),
            "/scratch",
            "--chdir",
            "/scratch",
            "--clearenv",
            "--setenv",
            "HOME",
            "/scratch",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            self.settings.python,
            "-I",  # no site-packages, no PYTHON* variables, no cwd on sys.path
            "-c",
            code,
        ]

    def _limits(self, as_root: bool) -> list[str]:
        """`prlimit` options; prlimit sets them on itself, then runs bwrap under them."""
        s = self.settings
        processes = s.max_processes + 2  # bwrap's own two processes count too
        if not as_root:  # an ordinary user's count includes every process they already run
            processes += _own_processes()
        return [
            f"--cpu={s.cpu_s}:{s.cpu_s + 1}",  # SIGXCPU at the soft limit, SIGKILL a second later
            f"--as={s.memory_mb << 20}",
            f"--nproc={processes}",
            f"--fsize={s.max_file_mb << 20}",
            "--nofile=64",
            "--core=0",
        ]

    async def _collect(self, process: asyncio.subprocess.Process) -> SandboxResult:
        s = self.settings
        out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        status = "completed"

        async def read(name: str, stream: asyncio.StreamReader) -> None:
            nonlocal status
            while chunk := await stream.read(READ_CHUNK):
                out[name] += chunk
                if len(out["stdout"]) + len(out["stderr"]) > s.max_output_bytes:
                    status = f"stopped: output exceeded {s.max_output_bytes} bytes"
                    _kill(process)
                    return

        readers = asyncio.gather(read("stdout", process.stdout), read("stderr", process.stderr))
        try:
            await asyncio.wait_for(asyncio.shield(readers), s.timeout_s)
        except asyncio.TimeoutError:
            status = f"stopped: timed out after {s.timeout_s:g} s"
            _kill(process)
            await readers
        except asyncio.CancelledError:  # the turn was abandoned: take the process with it
            _kill(process)
            raise
        code = await process.wait()
        if status == "completed" and code > 128:  # bwrap exits 128 + the signal that killed the code
            status = _signal_status(code - 128, s)
        cap = s.max_output_bytes
        return SandboxResult(
            status=status,
            exit_code=code,
            stdout=out["stdout"][:cap].decode(errors="replace"),
            stderr=out["stderr"][:cap].decode(errors="replace"),
        )


def _kill(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _signal_status(signum: int, s: SandboxSettings) -> str:
    if signum == signal.SIGXCPU:
        return f"stopped: CPU time limit of {s.cpu_s} s"
    if signum == signal.SIGXFSZ:
        return f"stopped: file size limit of {s.max_file_mb} MB"
    return f"stopped: killed by signal {signal.Signals(signum).name}"


def _own_processes() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += 1
        except OSError:
            continue
    return count
