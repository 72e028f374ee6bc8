"""Durable metadata (agents, datasets, banks, jobs): SQLite under the data dir, the embedded
default, or PostgreSQL (`metadata_url: postgresql://...`) for a cluster, where gateways on
several nodes write at once and SQLite's file locks do not hold on a network filesystem.

One table of JSON records keyed by (kind, key), and one of append-only text lines (a job's
log) so that a long log is never rewritten to add a line. Every write commits before it returns,
so a crash or restart loses nothing that was acknowledged. Both databases run the same
statements; a backend says only how to connect, lock and spell a parameter.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol

from llamaray.errors import ConflictError, NotFoundError
from llamaray.store.local_disk import require_local_disk

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS lines (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (kind, key, seq)
)
"""
ESCAPED = re.compile(r"\\(.)", re.DOTALL)  # in PostgreSQL text, backslash-0 stands for a NUL
UPSERT = (
    "INSERT INTO records (kind, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


class Backend(Protocol):
    integrity_error: type[Exception]

    def transaction(self) -> Any:
        """A context manager: a connection whose statements commit together at its end."""

    def sql(self, statement: str) -> str: ...

    def lock_key(self, db: Any, kind: str, key: str) -> None:
        """Held until the transaction ends: one writer of a key at a time (two appenders of one log
        never take the same numbers; two claimants of a lease never both get it)."""

    def text(self, value: str) -> str:
        """What the database can store for `value` (PostgreSQL's text holds no NUL)."""

    def untext(self, value: str) -> str: ...


class SQLiteBackend:
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        require_local_disk(path.parent, "the SQLite metadata store")
        with self.transaction() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers go on while one process writes
            db.executescript(SCHEMA.format(float="REAL"))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # commits on success, rolls back on error
                yield db
        finally:
            db.close()

    def sql(self, statement: str) -> str:
        return statement

    def lock_key(self, db: sqlite3.Connection, kind: str, key: str) -> None:
        db.execute("BEGIN IMMEDIATE")  # one writer at a time: the count and the insert together

    def text(self, value: str) -> str:
        return value

    def untext(self, value: str) -> str:
        return value


class PostgresBackend:
    """A small pool of connections per process (`max_size`): a platform's processes (gateway
    replicas, the job tracker, drivers) stay well under the server's `max_connections`."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.integrity_error = psycopg.errors.UniqueViolation
        self.pool = ConnectionPool(url, min_size=0, max_size=max_size, timeout=30, open=True)
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(7204561)")  # two processes creating the tables at once
            for statement in SCHEMA.format(float="DOUBLE PRECISION").split(";"):
                db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.pool.connection() as db, db.transaction():
            yield _Cursors(db)

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def lock_key(self, db: Any, kind: str, key: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{kind}\x1f{key}".replace("\x00", ""),))

    def text(self, value: str) -> str:
        return value.replace("\\", "\\\\").replace("\x00", "\\0")

    def untext(self, value: str) -> str:
        return ESCAPED.sub(lambda m: "\x00" if m[1] == "0" else m[1], value) if "\\" in value else value


class _Cursors:
    """psycopg's connection as the statements use one: `execute` and `executemany`."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def execute(self, statement: str, params: tuple = ()) -> Any:
        return self.db.execute(statement, params)

    def executemany(self, statement: str, rows: list[tuple]) -> None:
        with self.db.cursor() as cursor:
            cursor.executemany(statement, rows)


def backend_for(where: str | Path) -> Backend:
    if isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(where)
    return SQLiteBackend(Path(where))


class MetadataStore:
    def __init__(self, where: str | Path) -> None:
        """`where`: a SQLite file, or a `postgresql://` URL."""
        self.backend = backend_for(where)

    @classmethod
    def of_platform(cls, data_dir: str | Path, metadata_url: str | None = None) -> "MetadataStore":
        """The platform's store: `metadata_url` when set, else `metadata.db` in the data dir."""
        return cls(metadata_url or Path(data_dir) / "metadata.db")

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        with self.backend.transaction() as db:
            yield db

    def _execute(self, db: Any, statement: str, params: tuple = ()) -> Any:
        return db.execute(self.backend.sql(statement), params)

    def _key(self, key: str) -> str:
        return self.backend.text(key)

    def create(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Insert a new record; a second record with the same key is a conflict."""
        now = time.time()
        try:
            with self._connect() as db:
                self._execute(
                    db,
                    "INSERT INTO records (kind, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (kind, self._key(key), json.dumps(value), now, now),
                )
        except self.backend.integrity_error:
            raise ConflictError(f"{kind} {key!r} already exists", key) from None

    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        now = time.time()
        with self._connect() as db:
            self._execute(db, UPSERT, (kind, self._key(key), json.dumps(value), now, now))

    def write_many(
        self,
        puts: list[tuple[str, str, dict[str, Any]]] = (),
        deletes: list[tuple[str, str]] = (),
        deleted_lines: list[tuple[str, str]] = (),
    ) -> None:
        """Several records written and deleted (and lines deleted) in one transaction: all of
        them, or none after a crash (a memory bank's commit: its version and its documents
        together; a job removed with its log)."""
        now = time.time()
        sql = self.backend.sql
        with self._connect() as db:
            if puts:
                rows = [(kind, self._key(key), json.dumps(value), now, now) for kind, key, value in puts]
                db.executemany(sql(UPSERT), rows)
            if deletes:
                rows = [(kind, self._key(key)) for kind, key in deletes]
                db.executemany(sql("DELETE FROM records WHERE kind = ? AND key = ?"), rows)
            if deleted_lines:
                rows = [(kind, self._key(key)) for kind, key in deleted_lines]
                db.executemany(sql("DELETE FROM lines WHERE kind = ? AND key = ?"), rows)

    def get(self, kind: str, key: str) -> dict[str, Any]:
        with self._connect() as db:
            row = self._execute(
                db, "SELECT value FROM records WHERE kind = ? AND key = ?", (kind, self._key(key))
            ).fetchone()
        if row is None:
            raise NotFoundError(f"{kind} {key!r} does not exist", key)
        return json.loads(row[0])

    def list(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        with self._connect() as db:
            rows = self._execute(
                db, "SELECT key, value FROM records WHERE kind = ? ORDER BY created_at, key", (kind,)
            ).fetchall()
        return [(self.backend.untext(key), json.loads(value)) for key, value in rows]

    def existing(self, kind: str, keys: list[str]) -> set[str]:
        """Which of `keys` have a record: an index lookup per key, not a read of the whole kind
        (a memory bank insert checked its documents against every stored one, content included)."""
        found: set[str] = set()
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                part = [self._key(key) for key in keys[start : start + 500]]
                marks = ", ".join("?" * len(part))
                rows = self._execute(
                    db, f"SELECT key FROM records WHERE kind = ? AND key IN ({marks})", (kind, *part)
                ).fetchall()
                found.update(self.backend.untext(key) for (key,) in rows)
        return found

    def delete(self, kind: str, key: str) -> None:
        with self._connect() as db:
            deleted = self._execute(
                db, "DELETE FROM records WHERE kind = ? AND key = ?", (kind, self._key(key))
            ).rowcount
        if not deleted:
            raise NotFoundError(f"{kind} {key!r} does not exist", key)

    def rename_kind(self, old: str, new: str) -> int:
        """Moves every record and line of kind `old` to `new` in one transaction (a migration
        when a kind is renamed); how many records moved."""
        with self._connect() as db:
            moved = self._execute(db, "UPDATE records SET kind = ? WHERE kind = ?", (new, old)).rowcount
            self._execute(db, "UPDATE lines SET kind = ? WHERE kind = ?", (new, old))
        return moved

    def claim(self, kind: str, key: str, owner: str, ttl_s: float) -> bool:
        """A lease: `owner` holds (kind, key) for `ttl_s` from now unless another owner holds an
        unexpired one; claiming again renews it. Processes that share the store (memory server
        replicas on several nodes) take turns with it; a holder that dies frees it by expiring."""
        now = time.time()
        with self._connect() as db:
            held = self._locked_lease(db, kind, key)
            if held is not None and held["owner"] != owner and held["expires_at"] > now:
                return False
            lease = json.dumps({"owner": owner, "expires_at": now + ttl_s})
            self._execute(db, UPSERT, (kind, self._key(key), lease, now, now))
        return True

    def release(self, kind: str, key: str, owner: str) -> None:
        """Ends `owner`'s lease; one it no longer holds stays with whoever does."""
        with self._connect() as db:
            held = self._locked_lease(db, kind, key)
            if held is not None and held["owner"] == owner:
                self._execute(db, "DELETE FROM records WHERE kind = ? AND key = ?", (kind, self._key(key)))

    def _locked_lease(self, db: Any, kind: str, key: str) -> dict[str, Any] | None:
        """The lease record, with the key locked until the transaction ends."""
        self.backend.lock_key(db, kind, key)
        row = self._execute(
            db, "SELECT value FROM records WHERE kind = ? AND key = ?", (kind, self._key(key))
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def append_lines(self, kind: str, key: str, lines: list[str]) -> None:
        with self._connect() as db:
            self.backend.lock_key(db, kind, key)
            (count,) = self._execute(
                db, "SELECT COUNT(*) FROM lines WHERE kind = ? AND key = ?", (kind, self._key(key))
            ).fetchone()
            rows = [(kind, self._key(key), count + i, self.backend.text(line)) for i, line in enumerate(lines)]
            db.executemany(self.backend.sql("INSERT INTO lines (kind, key, seq, line) VALUES (?, ?, ?, ?)"), rows)

    def delete_lines(self, kind: str, key: str) -> None:
        with self._connect() as db:
            self._execute(db, "DELETE FROM lines WHERE kind = ? AND key = ?", (kind, self._key(key)))

    def read_lines(self, kind: str, key: str, start: int = 0) -> list[str]:
        """The lines from number `start` on: a follower passes how many it has already read."""
        with self._connect() as db:
            rows = self._execute(
                db,
                "SELECT line FROM lines WHERE kind = ? AND key = ? AND seq >= ? ORDER BY seq",
                (kind, self._key(key), start),
            ).fetchall()
        return [self.backend.untext(row[0]) for row in rows]
