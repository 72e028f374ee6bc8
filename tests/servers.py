"""Real servers the tests start on this machine, each on loopback ports in a directory of its own:
PostgreSQL (Debian's package, installed by `make test`), run as the `postgres` user when the
tests run as root; a standalone Milvus server (the `milvus` package on PyPI ships its binaries:
Milvus 2.3.5, embedded etcd, local storage); and an S3 endpoint (moto's server, which speaks S3's
own HTTP API) standing in for the object store no test can reach."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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


S3_KEYS = {"AWS_ACCESS_KEY_ID": "llamaray-test", "AWS_SECRET_ACCESS_KEY": "llamaray-test"}


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on a loopback port; yields its endpoint (`127.0.0.1:PORT`). Clients need
    some credentials (any: `S3_KEYS`), as they would against S3."""
    import httpx

    port = _free_port()
    binary = Path(sys.executable).parent / "moto_server"
    log = tempfile.NamedTemporaryFile(prefix="llamaray-s3-", suffix=".log", delete=False)
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto's S3 server did not start: {Path(log.name).read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.unlink(log.name)


def s3_storage_path(endpoint: str, bucket: str, prefix: str) -> str:
    """A `storage_path` on the S3 endpoint, its bucket made: what a MinIO user configures."""
    from pyarrow import fs

    os.environ.update(S3_KEYS)
    options = f"endpoint_override={endpoint}&scheme=http&region=us-east-1"
    filesystem, _ = fs.FileSystem.from_uri(f"s3://{bucket}?{options}&allow_bucket_creation=true")
    filesystem.create_dir(bucket)
    return f"s3://{bucket}/{prefix}?{options}"
