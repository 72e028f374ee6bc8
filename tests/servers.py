"""Real servers the tests start on this machine, each on loopback ports in a directory of its own:
PostgreSQL (Debian's package, installed by `make test`), run as the `postgres` user when the
tests run as root; and a standalone Milvus server (the `milvus` package on PyPI ships its binaries:
Milvus 2.3.5, embedded etcd, local storage)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server with a fresh cluster in a directory of its own (the `postgres` user
    must reach it: pytest's own are root's alone), removed after; yields a URL of its `postgres`
    database for the `llamaray` superuser (trust auth on loopback only)."""
    pg_ctl, initdb = postgres_bin("pg_ctl"), postgres_bin("initdb")
    if not pg_ctl or not initdb:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="llamaray-postgres-"))
    data, sockets = root / "pgdata", root / "pgsock"
    for directory in (root, sockets):
        directory.mkdir(parents=True, exist_ok=True)
        if as_user:
            shutil.chown(directory, "postgres", "postgres")
    port = _free_port()
    run = dict(check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/tmp")
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "llamaray", "-E", "UTF8"], **run)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    log = root / "postgres.log"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"], **run)
    try:
        yield f"postgresql://llamaray@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], **run)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def milvus_server() -> Iterator[str]:
    """A standalone Milvus server with a fresh data directory, removed after; yields its URI."""
    from milvus import MilvusServer

    with socket.socket() as probe:  # its embedded etcd always takes the peer port 2380
        if probe.connect_ex(("127.0.0.1", 2380)) == 0:
            raise RuntimeError("port 2380 is taken: a Milvus server (or etcd) from an earlier run still runs")
    root = tempfile.mkdtemp(prefix="llamaray-milvus-")
    server = MilvusServer()
    server.set_base_dir(root)
    server.start()  # waits for its health endpoint
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
