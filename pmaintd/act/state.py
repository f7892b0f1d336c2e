"""The persisted action state machine: one sqlite file (WAL) in the state dir, shared by the daemon and the CLI.

    proposed -> approved | auto | observed | rejected | expired
    approved | auto -> running | expired   (expired: its owner died and the forecast window ended unstarted)
    running -> succeeded | failed | unknown
    unknown -> succeeded | failed          (after a crash, decided by the action's verify command)
    succeeded | failed | unknown -> undone

Every change goes through `transition`, which refuses a move the table above does not allow, inside a
`BEGIN IMMEDIATE` transaction so two processes (daemon and `pmaintd actions approve`) cannot both move one
action. A `running` row remembers the process that runs it, so a restarted process can tell an action whose
owner died (kill -9) from one another live process is still carrying out.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pmaintd.telemetry import format_time

STATES = (
    "proposed", "approved", "auto", "observed", "rejected", "expired",
    "running", "succeeded", "failed", "unknown", "undone",
)  # fmt: skip

TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"approved", "auto", "observed", "rejected", "expired"}),
    "approved": frozenset({"running", "expired"}),
    "auto": frozenset({"running", "expired"}),
    "running": frozenset({"succeeded", "failed", "unknown"}),
    "unknown": frozenset({"succeeded", "failed", "undone"}),
    "succeeded": frozenset({"undone"}),
    "failed": frozenset({"undone"}),
    "observed": frozenset(),
    "rejected": frozenset(),
    "expired": frozenset(),
    "undone": frozenset(),
}

ACTED = ("running", "succeeded", "failed", "unknown", "undone")
"""States of an action that was actually carried out (counted for recurring healing)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    host TEXT NOT NULL,
    run_on TEXT NOT NULL,
    mode TEXT NOT NULL,
    state TEXT NOT NULL,
    probability REAL NOT NULL,
    horizon_hours REAL NOT NULL,
    reasons TEXT NOT NULL,
    window_start REAL NOT NULL,
    window_end REAL NOT NULL,
    fleet INTEGER NOT NULL,
    command TEXT NOT NULL,
    verify TEXT,
    undo TEXT,
    timeout REAL NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    claimed REAL,
    started REAL,
    finished REAL,
    owner_pid INTEGER,
    owner_start REAL,
    child_pid INTEGER,
    child_start REAL,
    returncode INTEGER,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    truncated INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS actions_policy_entity ON actions (policy, entity, window_end);
CREATE INDEX IF NOT EXISTS actions_entity ON actions (entity, claimed);
CREATE INDEX IF NOT EXISTS actions_state ON actions (state);
"""


class ActionStateError(Exception):
    """The actions database could not be opened (state dir missing or unwritable, file damaged); names the file."""


class IllegalTransition(Exception):
    """A move the state machine does not allow (e.g. approving an action that already ran)."""


class NoSuchAction(KeyError):
    """No action has this id."""

    def __str__(self) -> str:
        return f"no action with id {self.args[0]}"


@dataclass(frozen=True)
class ActionRecord:
    """One action as stored: what was decided, the exact commands (already rendered and quoted), and its outcome."""

    id: int
    policy: str
    action: str
    kind: str
    entity: str
    host: str
    run_on: str
    mode: str
    state: str
    probability: float
    horizon_hours: float
    reasons: list[Any]
    window_start: float
    window_end: float
    fleet: int
    command: str
    verify: str | None
    undo: str | None
    timeout: float
    created: float
    updated: float
    claimed: float | None
    started: float | None
    finished: float | None
    owner_pid: int | None
    owner_start: float | None
    child_pid: int | None
    child_start: float | None
    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    message: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ActionRecord:
        d = dict(row)
        d["reasons"] = json.loads(d["reasons"])
        d["truncated"] = bool(d["truncated"])
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        """The shape `actions list/show --json` print: times as RFC 3339 UTC, process bookkeeping left out."""
        d = asdict(self)
        for k in ("owner_pid", "owner_start", "child_pid", "child_start"):
            d.pop(k)
        for k in ("window_start", "window_end", "created", "updated", "claimed", "started", "finished"):
            if d[k] is not None:
                d[k] = format_time(int(d[k] * 1e9))
        return d


class ActionDB:
    """The actions table. Each method is its own transaction unless called inside `transaction()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ActionStateError(f"cannot open action state {path}: {exc}") from None
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE: takes the write lock up front, so check-then-claim is atomic across processes."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def insert(self, **fields: Any) -> ActionRecord:
        """Create an action in state `proposed`."""
        now = time.time()
        fields = {**fields, "state": "proposed", "created": now, "updated": now}
        fields["reasons"] = json.dumps(fields.get("reasons") or [])
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self.transaction():
            cur = self._db.execute(f"INSERT INTO actions ({cols}) VALUES ({marks})", tuple(fields.values()))
            return self.get(int(cur.lastrowid or 0))

    def get(self, action_id: int) -> ActionRecord:
        row = self._db.execute("SELECT * FROM actions WHERE id = ?", (action_id,)).fetchone()
        if row is None:
            raise NoSuchAction(action_id)
        return ActionRecord.from_row(row)

    def transition(self, action_id: int, new_state: str, **fields: Any) -> tuple[str, ActionRecord]:
        """Move an action to new_state (setting any extra columns); returns (old state, new record)."""
        if new_state not in STATES:
            raise IllegalTransition(f"{new_state!r} is not a state; states: {', '.join(STATES)}")
        with self.transaction():
            old = self.get(action_id).state
            if new_state not in TRANSITIONS[old]:
                allowed = ", ".join(sorted(TRANSITIONS[old])) or "none (final state)"
                raise IllegalTransition(f"action {action_id} is {old}; cannot become {new_state} (allowed: {allowed})")
            sets = {**fields, "state": new_state, "updated": time.time()}
            assign = ", ".join(f"{k} = ?" for k in sets)
            self._db.execute(f"UPDATE actions SET {assign} WHERE id = ?", (*sets.values(), action_id))
            return old, self.get(action_id)

    def update(self, action_id: int, **fields: Any) -> None:
        """Set bookkeeping columns (child pid, output) without a state change."""
        assign = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self._db.execute(f"UPDATE actions SET {assign} WHERE id = ?", (*fields.values(), action_id))

    def list(self, states: Sequence[str] = (), limit: int = 1000) -> list[ActionRecord]:
        """Newest first."""
        q, args = "SELECT * FROM actions", []
        if states:
            q += f" WHERE state IN ({', '.join('?' for _ in states)})"
            args = list(states)
        rows = self._db.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [ActionRecord.from_row(r) for r in rows]

    def open_for(self, policy: str, entity: str, at: float) -> ActionRecord | None:
        """The action this policy already has for this entity whose forecast window is still open at `at`."""
        row = self._db.execute(
            "SELECT * FROM actions WHERE policy = ? AND entity = ? AND window_start <= ? AND window_end > ? "
            "ORDER BY id DESC LIMIT 1",
            (policy, entity, at, at),
        ).fetchone()
        return ActionRecord.from_row(row) if row else None

    def count(self, where: str, args: Sequence[Any] = (), what: str = "*") -> int:
        """count(what) over the rows matching a WHERE clause (callers pass constant SQL, values as args)."""
        return int(self._db.execute(f"SELECT count({what}) FROM actions WHERE {where}", tuple(args)).fetchone()[0])

    def entities(self, where: str, args: Sequence[Any] = ()) -> set[str]:
        """Distinct entities of the rows matching a WHERE clause (constant SQL, values as args)."""
        return {r[0] for r in self._db.execute(f"SELECT DISTINCT entity FROM actions WHERE {where}", tuple(args))}

    def last_claimed(self, entity: str) -> float | None:
        """When an action on this entity was last approved or auto-started (for the per-entity cooldown)."""
        row = self._db.execute("SELECT max(claimed) FROM actions WHERE entity = ?", (entity,)).fetchone()
        return row[0]

    def acted_since(self, since: float) -> list[tuple[str, str, int, float]]:
        """(kind, entity, number of actions carried out, latest start) for entities acted on since `since`."""
        marks = ", ".join("?" for _ in ACTED)
        rows = self._db.execute(
            f"SELECT kind, entity, count(*), max(started) FROM actions WHERE state IN ({marks}) AND started >= ? "
            "GROUP BY kind, entity",
            (*ACTED, since),
        ).fetchall()
        return [(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    def close(self) -> None:
        self._db.close()
