"""Durable metadata (agents, datasets, banks, jobs) in SQLite under the data dir.

One table of JSON records keyed by (kind, key), and one of append-only text lines (a job's
log) so that a long log is never rewritten to add a line. Every write commits before it returns, so a
crash or restart loses nothing that was acknowledged; WAL mode lets the gateway, the job
tracker and jobs read while one of them writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from llamaray.errors import ConflictError, NotFoundError

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
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


class MetadataStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # commits on success, rolls back on error
                yield db
        finally:
            db.close()

    def create(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Insert a new record; a second record with the same key is a conflict."""
        now = time.time()
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO records (kind, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (kind, key, json.dumps(value), now, now),
                )
        except sqlite3.IntegrityError:
            raise ConflictError(f"{kind} {key!r} already exists", key) from None

    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO records (kind, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (kind, key, json.dumps(value), now, now),
            )

    def write_many(self, puts: list[tuple[str, str, dict[str, Any]]] = (), deletes: list[tuple[str, str]] = ()) -> None:
        """Several records written and deleted in one transaction: all of them, or none after a
        crash (a memory bank's commit: its version and its documents together)."""
        now = time.time()
        with self._connect() as db:
            db.executemany(
                "INSERT INTO records (kind, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [(kind, key, json.dumps(value), now, now) for kind, key, value in puts],
            )
            db.executemany("DELETE FROM records WHERE kind = ? AND key = ?", list(deletes))

    def get(self, kind: str, key: str) -> dict[str, Any]:
        with self._connect() as db:
            row = db.execute("SELECT value FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        if row is None:
            raise NotFoundError(f"{kind} {key!r} does not exist", key)
        return json.loads(row[0])

    def list(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, value FROM records WHERE kind = ? ORDER BY created_at, key", (kind,)
            ).fetchall()
        return [(key, json.loads(value)) for key, value in rows]

    def delete(self, kind: str, key: str) -> None:
        with self._connect() as db:
            deleted = db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key)).rowcount
        if not deleted:
            raise NotFoundError(f"{kind} {key!r} does not exist", key)

    def rename_kind(self, old: str, new: str) -> int:
        """Moves every record and line of kind `old` to `new` in one transaction (a migration
        when a kind is renamed); how many records moved."""
        with self._connect() as db:
            moved = db.execute("UPDATE records SET kind = ? WHERE kind = ?", (new, old)).rowcount
            db.execute("UPDATE lines SET kind = ? WHERE kind = ?", (new, old))
        return moved

    def append_lines(self, kind: str, key: str, lines: list[str]) -> None:
        with self._connect() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM lines WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            db.executemany(
                "INSERT INTO lines (kind, key, seq, line) VALUES (?, ?, ?, ?)",
                [(kind, key, count + i, line) for i, line in enumerate(lines)],
            )

    def delete_lines(self, kind: str, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM lines WHERE kind = ? AND key = ?", (kind, key))

    def read_lines(self, kind: str, key: str, start: int = 0) -> list[str]:
        """The lines from number `start` on: a follower passes how many it has already read."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT line FROM lines WHERE kind = ? AND key = ? AND seq >= ? ORDER BY seq", (kind, key, start)
            ).fetchall()
        return [row[0] for row in rows]
