"""Refusing a network filesystem where only a local disk is safe.

SQLite and Milvus Lite lock their files with POSIX locks, which NFS, SMB and most FUSE
filesystems do not honour between machines: two nodes writing one `metadata.db` or `milvus.db`
over NFS corrupt it silently. On a cluster the metadata goes to PostgreSQL (`metadata_url`) and
the vectors to a Milvus server (`memory.milvus_uri`); the data dir may still be shared storage.
"""

from __future__ import annotations

from pathlib import Path

NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs",
    "beegfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "fuse.glusterfs", "fuse.cephfs",
}  # fmt: skip


def filesystem_of(path: str | Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem `path` lies on (the longest mount point above it); None when
    the mount table cannot be read (not Linux)."""
    target = Path(path).resolve()
    best, kind = -1, None
    try:
        table = Path(mounts).read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (target == point or point in target.parents) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind


def require_local_disk(path: str | Path, what: str, mounts: str = "/proc/mounts") -> None:
    kind = filesystem_of(path, mounts)
    if kind in NETWORK_FILESYSTEMS:
        raise ValueError(
            f"{what} is at {path}, on a network filesystem ({kind}), where its file locks do not hold "
            "between machines; set metadata_url (PostgreSQL) and memory.milvus_uri (a Milvus server) "
            "for a cluster, or put the data dir on a local disk"
        )
