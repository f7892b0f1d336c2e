"""A durable, bounded, crash-safe on-disk queue of write requests that could not reach InfluxDB.

Each record is one write request's body (line protocol, gzip-compressed) and its point count, in a
sqlite file in the state dir (WAL, `synchronous=FULL`: a record is on disk before `append` returns, and
a torn write rolls back instead of corrupting the queue). Records are replayed oldest first; a record is
deleted only after the server acknowledged it, and that delete is committed (fsync) before the next
record is sent, so nothing acknowledged is sent again (the one window left is a crash between the
server's 204 and that commit). When the stored bytes exceed the bound the oldest records are dropped
and their points counted in `dropped`, never silently. Replay is guarded by an advisory lock file, so a
CLI command and the daemon sharing a state dir never replay the same record at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pmaintd.store import StoreError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    points INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class SpoolRecord:
    id: int
    points: int
    body: bytes
    """gzip-compressed line protocol, exactly as it would be sent with Content-Encoding: gzip."""


class Spool:
    """Oldest-first queue of gzip'd write bodies, bounded by `max_bytes` of stored body bytes.

    Counters for this process (read by the daemon's /metrics): `spooled` and `dropped` points;
    `pending_points()` / `pending_bytes()` are what the file holds now (all processes).
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.spooled = 0
        self.dropped = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open spool {self.path}: {exc}") from None
        self._lockfile = self.path.with_suffix(".lock").open("a+")

    def append(self, body: bytes, points: int) -> None:
        """Store one gzip'd body durably, then drop the oldest records while over the bound."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO spool (points, body) VALUES (?, ?)", (points, body))
                total = self._db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM spool").fetchone()[0]
                dropped = 0
                while total > self.max_bytes:
                    rid, n, size = self._db.execute(
                        "SELECT id, points, LENGTH(body) FROM spool ORDER BY id LIMIT 1"
                    ).fetchone()
                    self._db.execute("DELETE FROM spool WHERE id = ?", (rid,))
                    total -= size
                    dropped += n
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write to spool {self.path}: {exc}") from None
            self.spooled += points
            if dropped:
                self.dropped += dropped
                log.warning(
                    "spool %s is over its bound of %d bytes: dropped the oldest %d points", self.path,
                    self.max_bytes, dropped,
                )

    def oldest(self) -> SpoolRecord | None:
        """The record to replay next, or None when the spool is empty."""
        with self._lock:
            row = self._db.execute("SELECT id, points, body FROM spool ORDER BY id LIMIT 1").fetchone()
        return SpoolRecord(row[0], row[1], bytes(row[2])) if row else None

    def remove(self, record: SpoolRecord) -> None:
        """Forget a record the server acknowledged (or rejected); committed before this returns."""
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE id = ?", (record.id,))

    def pending_points(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(points), 0) FROM spool").fetchone()[0]

    def pending_bytes(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM spool").fetchone()[0]

    def is_empty(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM spool LIMIT 1").fetchone() is None

    @contextlib.contextmanager
    def replaying(self) -> Iterator[bool]:
        """Hold the replay lock if no other process holds it; yields whether this one got it."""
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)

    def compact(self) -> None:
        """Give freed pages back to the filesystem and truncate the WAL (cheap when empty)."""
        with self._lock:
            self._db.execute("PRAGMA incremental_vacuum")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lockfile.close()
