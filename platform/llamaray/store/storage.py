"""Shared storage: where the files one node writes and another reads live.

Checkpoints (written by a training worker, loaded by an engine replica on any node), the
trainer's resumable state (read by the worker Ray Train starts in a lost one's place), Ray
Train's run directory and the datasets data jobs write (read by the gateway and by training)
all go under `storage_path` in the config. That is a directory every node mounts (NFS; the
data dir by default, which is all one machine needs) or an object store URI (`s3://bucket/key`,
`gs://bucket/key`, with pyarrow's query options such as `endpoint_override` for MinIO), read
and written through pyarrow's filesystems as Ray Train's own `storage_path` is.

On a directory, files are written and read where they lie. On an object store, a node writes
into its own staging directory and publishes the result (an upload), and reads a local copy it
downloaded into its cache; what is published is never changed afterwards, so a copy stays true.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import uuid
from pathlib import Path

SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MARKER = "storage-token"  # written by one node and read by another: is the path shared?
# Where a process that holds only a URI (an engine replica, a training worker) keeps what it
# downloaded: per node, outside any data dir.
NODE_CACHE = Path(tempfile.gettempdir()) / "llamaray-storage"
PUBLISHED = "published"  # in a trainer state once every rank has published its part


class StorageError(RuntimeError):
    """Shared storage that is not: a path one node wrote and another cannot see."""


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


class SharedStorage:
    def __init__(self, storage_path: str, data_dir: str | Path) -> None:
        from pyarrow import fs

        self.data_dir = Path(data_dir)
        if is_remote(storage_path):
            head, _, query = storage_path.partition("?")
            self.filesystem, self.root = fs.FileSystem.from_uri(storage_path)
            self.root = self.root.rstrip("/")
            self.scheme = head.split("://", 1)[0].lower()
            self.query = query
            self.local = False
        else:
            path = (
                urllib.parse.unquote(urllib.parse.urlparse(storage_path).path)
                if "://" in storage_path
                else storage_path
            )
            self.filesystem, self.root = fs.LocalFileSystem(), str(Path(path).resolve())
            self.scheme, self.query, self.local = "file", "", True

    @classmethod
    def of_platform(cls, platform) -> "SharedStorage":
        """The storage of a `PlatformConfig` (resolved): `storage_path`, or else the data dir."""
        return cls(platform.storage_path or platform.data_dir, platform.data_dir)

    # Names ---------------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        """The filesystem path of `parts` under the root; every part a safe name, so nothing a
        request names can lead out of the storage."""
        for part in parts:
            if not SAFE_PART.fullmatch(part):
                raise ValueError(f"{part!r} is not a storage name")
        return "/".join([self.root, *parts])

    def uri(self, *parts: str) -> str:
        """What records and responses name: `file:///...` or `s3://bucket/...` (no options)."""
        path = self.path(*parts)
        return Path(path).as_uri() if self.local else f"{self.scheme}://{path}"

    def with_options(self, uri: str) -> str:
        """`uri` with the storage's filesystem options (an endpoint), for a process that holds
        only the URI (an engine replica loading an adapter)."""
        return f"{uri}?{self.query}" if self.query and is_remote(uri) and "?" not in uri else uri

    def holds(self, uri: str) -> str | None:
        """The filesystem path `uri` names when it lies under the root, else None."""
        if self.local:
            if not uri.startswith(("file://", "/")):
                return None
            raw = urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file:") else uri
            path = Path(raw).resolve()
            return str(path) if path.is_relative_to(self.root) else None
        head = uri.partition("?")[0]
        prefix = f"{self.scheme}://"
        if not head.startswith(prefix):
            return None
        path = head[len(prefix) :].rstrip("/")
        parts = path.split("/")
        if ".." in parts or "." in parts or "" in parts:
            return None
        return path if path.startswith(self.root + "/") else None

    # Writing -------------------------------------------------------------------------------

    def workdir(self, *parts: str) -> Path:
        """Where this node writes files bound for `parts`: the place itself on a directory,
        a staging directory of its own on an object store (publish them after)."""
        if self.local:
            return Path(self.path(*parts))
        self.path(*parts)
        return self.data_dir / "staging" / Path(*parts)

    def publish(self, local: Path, *parts: str) -> str:
        """Makes a file or directory written at `local` visible to every node as `parts`."""
        from pyarrow import fs

        target = self.path(*parts)
        if self.local:
            if Path(local).resolve() != Path(target):
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                copy = shutil.copytree if Path(local).is_dir() else shutil.copy2
                copy(local, target, **({"dirs_exist_ok": True} if Path(local).is_dir() else {}))
        elif Path(local).is_dir():
            fs.copy_files(str(local), target, destination_filesystem=self.filesystem)
        else:
            with open(local, "rb") as source, self.filesystem.open_output_stream(target) as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        return self.uri(*parts)

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """A whole file or none: a reader never sees half of it."""
        target = self.path(*parts)
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            partial = f"{target}.{uuid.uuid4().hex[:12]}.partial"
            Path(partial).write_bytes(data)
            os.replace(partial, target)
        else:
            with self.filesystem.open_output_stream(target) as sink:
                sink.write(data)
        return self.uri(*parts)

    def remove(self, *parts: str) -> None:
        """A file or directory, if there; never anything outside the root."""
        from pyarrow import fs

        target = self.path(*parts)
        info = self.filesystem.get_file_info(target)
        if info.type == fs.FileType.Directory:
            self.filesystem.delete_dir(target)
        elif info.type == fs.FileType.File:
            self.filesystem.delete_file(target)

    def remove_uri(self, uri: str) -> None:
        path = self.holds(uri)
        if path is not None:
            self.remove(*path[len(self.root) + 1 :].split("/"))

    # Reading -------------------------------------------------------------------------------

    def exists(self, uri: str) -> bool:
        from pyarrow import fs

        path = self.holds(uri)
        return path is not None and self.filesystem.get_file_info(path).type != fs.FileType.NotFound

    def read_bytes(self, uri: str) -> bytes:
        path = self.holds(uri)
        if path is None:
            raise FileNotFoundError(uri)
        with self.filesystem.open_input_stream(path) as stream:
            return stream.read()

    def local_copy(self, uri: str) -> Path:
        """A local path holding what `uri` names: itself on a directory, else a copy in this
        node's cache (downloaded once; published files never change)."""
        path = self.holds(uri)
        if path is None:
            raise FileNotFoundError(uri)
        if self.local:
            return Path(path)
        return download(self.filesystem, path, uri, self.data_dir / "cache" / "storage")

    def last_published_step(self, job_uuid: str) -> int | None:
        """The newest trainer state of a job that every rank published whole."""
        from pyarrow import fs

        base = self.path("jobs", job_uuid, "trainer")
        selector = fs.FileSelector(base, allow_not_found=True, recursive=True)
        steps = [
            int(info.path.split("/")[-2].split("-")[-1])
            for info in self.filesystem.get_file_info(selector)
            if info.path.endswith(f"/{PUBLISHED}") and re.fullmatch(r"checkpoint-\d+", info.path.split("/")[-2])
        ]
        return max(steps, default=None)

    # Ray Train -----------------------------------------------------------------------------

    def ray_train(self) -> tuple[str, object | None]:
        """`RunConfig(storage_path=..., storage_filesystem=...)` for the run directory."""
        return self.path("ray_train"), None if self.local else self.filesystem

    # Is it shared? -------------------------------------------------------------------------

    def mark(self, *parts: str) -> str:
        """Writes a new token at `parts/MARKER`; another node's `check_mark` must read it."""
        token = uuid.uuid4().hex
        self.write_bytes(token.encode(), *parts, MARKER)
        return token

    def check_mark(self, token: str, *parts: str) -> None:
        """Refuses storage this node does not share with the one that wrote `token`: a path
        on each node's own disk would lose checkpoints and datasets between nodes."""
        try:
            seen = self.read_bytes(self.uri(*parts, MARKER)).decode()
        except (FileNotFoundError, OSError):
            seen = None
        if seen != token:
            import socket

            raise StorageError(
                f"storage_path {self.uri()} is not shared storage: node {socket.gethostname()} does not see "
                "what another node wrote there; mount the same directory on every node (NFS) or set an "
                "s3:// or gs:// storage_path"
            )


def download(filesystem, path: str, uri: str, cache: Path) -> Path:
    """`path` of `filesystem` copied under `cache` (a file or a directory), whole or not at all."""
    from pyarrow import fs

    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.NotFound:
        raise FileNotFoundError(uri)
    key = hashlib.sha256(f"{uri}|{info.size}|{info.mtime_ns}".encode()).hexdigest()[:24]
    name = path.rsplit("/", 1)[-1]
    final = cache / key / name
    if final.exists():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    try:
        if info.type == fs.FileType.Directory:
            (staging / name).mkdir()  # copy_files makes the folders below it, not this one
            fs.copy_files(path, str(staging / name), source_filesystem=filesystem)
        else:
            with filesystem.open_input_stream(path) as source, open(staging / name, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        try:
            os.rename(staging, cache / key)
        except OSError:  # another process of this node downloaded it first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def read_uri(uri: str) -> bytes:
    """A file's bytes by path or by URI (with its filesystem options): a job's config."""
    if not is_remote(uri):
        return local_copy_of(uri, NODE_CACHE).read_bytes()
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


_COPIES: dict[str, Path] = {}  # what this process downloaded: published files never change


def local_copy_of(uri: str, cache: Path) -> Path:
    """For a process that holds only a URI (with its filesystem options): a local path."""
    if not is_remote(uri):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path)) if uri.startswith("file:") else Path(uri)
    copy = _COPIES.get(uri)
    if copy is None or not copy.exists():
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(uri)
        copy = _COPIES[uri] = download(filesystem, path.rstrip("/"), uri.partition("?")[0], cache)
    return copy
