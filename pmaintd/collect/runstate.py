"""Per (collector, target) run state: when it last ran, how long it took, whether it worked.

Kept in its own small sqlite file in the state dir (`runstate.db`, WAL), separate from the telemetry store
because that store may be a remote InfluxDB. The daemon and `collect --once` write it; `status` reads it
while they do (WAL lets readers and one writer work concurrently; writers wait on a busy timeout).

`record` returns the previous record so the caller can log a failure once when it starts and once on
recovery, not on every poll (ARCHITECTURE.md, Collectors).
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from pmaintd.telemetry import format_time

FILENAME = "runstate.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    collector TEXT NOT NULL,
    target TEXT NOT NULL,
    started_ns INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    points INTEGER NOT NULL,
    last_ok_ns INTEGER,
    consecutive_failures INTEGER NOT NULL,
    PRIMARY KEY (collector, target)
) WITHOUT ROWID;
"""


class RunStateError(Exception):
    """The run-state file could not be opened or written; the message names the file."""


@dataclass(frozen=True)
class RunRecord:
    """The latest run of one collector on one target."""

    collector: str
    target: str
    started_ns: int
    duration_s: float
    ok: bool
    error: str | None
    points: int
    last_ok_ns: int | None
    """When this pair last succeeded (None: never)."""
    consecutive_failures: int

    def to_json(self) -> dict[str, object]:
        """`status --json` shape: times as RFC 3339 UTC."""
        d: dict[str, object] = asdict(self)
        d["last_run"] = format_time(self.started_ns)
        d["last_ok"] = format_time(self.last_ok_ns) if self.last_ok_ns is not None else None
        del d["started_ns"], d["last_ok_ns"]
        return d


class RunState:
    """`RunState(state_dir).record(collector, target, started_ns, duration_s, ok, error, points)` and `.all()`."""

    def __init__(self, state_dir: Path, readonly: bool = False) -> None:
        """`readonly` (for `status`) opens an existing file without creating or changing anything, so a user
        who may only read the daemon's state dir can still see it."""
        self.path = Path(state_dir) / FILENAME
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RunStateError(f"cannot open run state {self.path}: {exc}") from None

    def record(
        self,
        collector: str,
        target: str,
        started_ns: int,
        duration_s: float,
        ok: bool,
        error: str | None,
        points: int,
    ) -> tuple[RunRecord | None, RunRecord]:
        """Store one run; returns (previous record or None, the new record)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            prev = self._get(collector, target)
            last_ok = started_ns if ok else (prev.last_ok_ns if prev else None)
            failures = 0 if ok else (prev.consecutive_failures if prev else 0) + 1
            err = None if ok else error
            new = RunRecord(collector, target, started_ns, duration_s, ok, err, points, last_ok, failures)
            self._db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (collector, target, started_ns, duration_s, int(ok), err, points, last_ok, failures),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise RunStateError(f"cannot record run in {self.path}: {exc}") from None
        return prev, new

    def _get(self, collector: str, target: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE collector = ? AND target = ?", (collector, target)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[RunRecord]:
        """Every (collector, target)'s latest run, ordered by collector then target."""
        try:
            return [_record(r) for r in self._db.execute("SELECT * FROM runs ORDER BY collector, target")]
        except sqlite3.Error as exc:
            raise RunStateError(f"cannot read run state {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunState:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _record(row: tuple[object, ...]) -> RunRecord:
    c, t, started, dur, ok, err, pts, last_ok, fails = row
    return RunRecord(str(c), str(t), int(started), float(dur), bool(ok), err, int(pts), last_ok, int(fails))  # type: ignore[arg-type]
