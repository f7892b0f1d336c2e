"""The action engine: the one API the CLI and the daemon's forecast job call.

    engine = ActionEngine(cfg, state_dir, store)       # store may be None (then no pmaintd_action points)
    engine.recover()                                    # settle actions a crashed process left `running`
    decisions = engine.run_once(forecasts)              # evaluate + execute; or evaluate(...) then execute(...)
    engine.approve(id) / reject(id) / undo(id)          # carry out / refuse / reverse one action
    engine.resolve(id, "succeeded" | "failed")          # a person settles an action left `unknown`
    engine.recurring()                                  # entities healed K times within W
    engine.close()

One engine per thread (it holds one sqlite connection); any number of processes may share the state dir.
Each decision, transition and outcome is audited (audit.jsonl, `pmaintd_action`, Grafana). Commands are
rendered, with every value shell-quoted, when the action is proposed, so what a person approves is exactly
what runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pmaintd.act.audit import AnnotateFn, Auditor
from pmaintd.act.executor import Executor
from pmaintd.act.limits import IN_EFFECT_WHERE, blocking_limit
from pmaintd.act.policy import Decision, Forecast, low_confidence
from pmaintd.act.state import TRANSITIONS, ActionDB, ActionRecord, ActionStateError, IllegalTransition, NoSuchAction
from pmaintd.act.templates import render
from pmaintd.config import Config, PolicyConfig, format_duration
from pmaintd.telemetry import format_time

log = logging.getLogger(__name__)

DB_NAME = "actions.db"
AUDIT_NAME = "audit.jsonl"

__all__ = [
    "ActionEngine", "ActionError", "ActionStateError", "IllegalTransition", "NoSuchAction", "Recurring",
    "recurring_healing",
]  # fmt: skip


class ActionError(Exception):
    """An operator request that cannot be done now (limit hit, expired, no undo command); says why."""


class _DryRun(Exception):
    """Raised inside the evaluate transaction to roll a dry run back."""


@dataclass(frozen=True)
class Recurring:
    """An entity acted on `count` times within the configured window: its root cause is not fixed."""

    kind: str
    entity: str
    count: int
    window: float
    last: float

    def describe(self) -> str:
        return f"{self.kind} {self.entity}: acted on {self.count} times in {format_duration(self.window)}"


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int | None, started: float | None) -> bool:
    """Is this exact process (pid plus start time, so a reused pid does not count) still running?"""
    if pid is None or started is None:
        return False
    now_start = _process_start(pid)
    return now_start is not None and abs(now_start - started) < 0.05


def recurring_healing(cfg: Config, state_dir: Path, now: float | None = None) -> list[Recurring]:
    """Entities healed [recurring] count times within [recurring] window, read without starting an engine
    (for `status` and `forecast`); empty when no action was ever recorded in this state dir."""
    path = state_dir / DB_NAME
    if not path.exists():
        return []
    db = ActionDB(path)
    try:
        return _recurring(db, cfg, now)
    finally:
        db.close()


def _recurring(db: ActionDB, cfg: Config, now: float | None) -> list[Recurring]:
    rc = cfg.recurring
    now = time.time() if now is None else now
    return [
        Recurring(kind, entity, n, rc.window, last)
        for kind, entity, n, last in db.acted_since(now - rc.window)
        if n >= rc.count
    ]


class ActionEngine:
    def __init__(
        self, cfg: Config, state_dir: Path, store: Any | None = None, annotate: AnnotateFn | None = None
    ) -> None:
        self.cfg = cfg
        self.db = ActionDB(state_dir / DB_NAME)
        self.auditor = Auditor(state_dir / AUDIT_NAME, store, annotate)
        self.executor = Executor(cfg.hosts)
        self._me = (os.getpid(), _process_start(os.getpid()))

    # ---- evaluation -------------------------------------------------------------------------------------

    def evaluate(self, forecasts: Sequence[Forecast], dry_run: bool = False) -> list[Decision]:
        """Decide, for every forecast and matching policy, and record the decisions (nothing runs yet).

        A dry run takes the same decisions against the same state, inside a transaction that is rolled back,
        so limits and duplicates within the batch are judged exactly as a real run would judge them.
        """
        fleet: dict[str, set[str]] = {}  # per kind: the entities this batch scores
        for f in forecasts:
            fleet.setdefault(f.kind, set()).add(f.entity)
        decisions: list[Decision] = []
        pending: list[dict[str, Any]] = []
        try:
            with self.db.transaction():
                now = time.time()
                pending += self._expire(now)
                for kind, members in fleet.items():  # entities acted on are part of the fleet, forecast or not
                    members |= self.db.entities(f"kind = ? AND {IN_EFFECT_WHERE}", (kind, now))
                for f in forecasts:
                    policies = [p for p in self.cfg.policies if p.kind == f.kind]
                    if not policies:
                        decisions.append(Decision(f, None, None, "no_policy", f"no policy for kind {f.kind!r}"))
                    for p in policies:
                        decisions.append(self._decide(f, p, len(fleet[f.kind]), dry_run, pending))
                if dry_run:
                    raise _DryRun
        except _DryRun:
            for d in decisions:  # ids of rows that were rolled back mean nothing
                if d.outcome in ("would_act", "proposed", "observed"):
                    d.action_id = None
            return decisions
        for rec in pending:
            self.auditor.record(rec)
        return decisions

    def _decide(
        self, f: Forecast, p: PolicyConfig, fleet: int, dry_run: bool, pending: list[dict[str, Any]]
    ) -> Decision:
        action = p.action
        if f.probability < p.min_probability:
            why = f"probability {f.probability:.3g} < min_probability {p.min_probability:g}"
            return Decision(f, p.name, action, "below_threshold", why)
        existing = self.db.open_for(p.name, f.entity, f.time)
        if existing is not None:
            why = f"already action {existing.id} ({existing.state}) for this forecast window"
            return Decision(f, p.name, action, "duplicate", why, existing.id, existing.state)
        now = time.time()
        if f.window_end <= now:
            why = f"forecast window ended at {format_time(int(f.window_end * 1e9))}: too old to act on"
            return Decision(f, p.name, action, "stale", why)
        escalated = low_confidence(f, p.min_confidence) if p.mode == "auto" else None
        if p.mode == "auto" and escalated is None:
            limit = blocking_limit(self.db, self.cfg.limits, f.kind, f.entity, fleet, now)
            if limit is not None:
                return Decision(f, p.name, action, "deferred", f"not acted on: {limit}")
        rec = self._insert(f, p, fleet)
        if p.mode == "approve" or escalated:
            why = escalated or "mode approve: waiting for `pmaintd actions approve`"
            self.db.update(rec.id, message=why)
            pending.append(self._audit_record(rec, "", "proposed", why))
            return Decision(f, p.name, action, "proposed", why, rec.id, "proposed")
        pending.append(self._audit_record(rec, "", "proposed", f"policy {p.name} matched"))
        if p.mode == "observe":
            target, fields, outcome, why = "observed", {}, "observed", "mode observe: recorded only, not acted on"
        else:
            target, outcome = "auto", "would_act" if dry_run else "acted"
            fields = {"claimed": now, "owner_pid": self._me[0], "owner_start": self._me[1]}
            why = f"mode auto: probability {f.probability:.3g} >= {p.min_probability:g}"
        old, rec = self.db.transition(rec.id, target, message=why, **fields)
        pending.append(self._audit_record(rec, old, target, why))
        return Decision(f, p.name, action, outcome, why, rec.id, rec.state)

    def _insert(self, f: Forecast, p: PolicyConfig, fleet: int) -> ActionRecord:
        a = self.cfg.actions[p.action]
        values = {"entity": f.entity, "host": f.host or f.entity, "kind": f.kind,
                  "probability": f.probability, "horizon_hours": f.horizon_hours}  # fmt: skip
        return self.db.insert(
            policy=p.name, action=p.action, kind=f.kind, entity=f.entity, host=f.host or f.entity,
            run_on=a.run_on, mode=p.mode, probability=f.probability, horizon_hours=f.horizon_hours,
            reasons=list(f.reasons), window_start=f.time, window_end=f.window_end, fleet=fleet,
            command=render(a.command, values), verify=render(a.verify, values) if a.verify else None,
            undo=render(a.undo, values) if a.undo else None, timeout=a.timeout,
        )  # fmt: skip

    def _expire(self, now: float) -> list[dict[str, Any]]:
        """Proposals and unstarted claims whose forecast window has passed can no longer be acted on."""
        out = []
        for rec in self.db.list(("proposed", "approved", "auto")):
            if rec.window_end <= now and (rec.state == "proposed" or not _alive(rec.owner_pid, rec.owner_start)):
                old, new = self.db.transition(rec.id, "expired", message="forecast window ended before it ran")
                out.append(self._audit_record(new, old, "expired", new.message))
        return out

    def execute(self, decisions: Iterable[Decision]) -> list[Decision]:
        """Carry out every decision evaluate left in state `auto`, one after another; decisions are updated."""
        out = list(decisions)
        for d in out:
            if d.outcome == "acted" and d.action_id is not None and d.state == "auto":  # not others' duplicates
                rec = self._carry_out(d.action_id)
                d.state, d.reason = rec.state, f"{d.reason}; {rec.message}"
        return out

    def run_once(self, forecasts: Sequence[Forecast], dry_run: bool = False) -> list[Decision]:
        """What `actions evaluate` and the daemon's forecast job do: settle crashes, decide, carry out."""
        if not dry_run:
            self.recover()
        decisions = self.evaluate(forecasts, dry_run=dry_run)
        return decisions if dry_run else self.execute(decisions)

    # ---- carrying out -----------------------------------------------------------------------------------

    def _carry_out(self, action_id: int) -> ActionRecord:
        """running -> succeeded | failed: the command, then (when it exited 0) its verify command."""
        self._move(action_id, "running", "started", started=time.time(),
                   owner_pid=self._me[0], owner_start=self._me[1])  # fmt: skip
        rec = self.db.get(action_id)

        def child_started(pid: int) -> None:
            self.db.update(action_id, child_pid=pid, child_start=_process_start(pid))

        res = self.executor.run(rec.run_on, rec.command, rec.timeout, on_start=child_started)
        out = {"returncode": res.returncode, "stdout": res.stdout, "stderr": res.stderr,
               "truncated": int(res.truncated), "finished": time.time()}  # fmt: skip
        if not res.ok:
            what = "nothing was run: " if not res.ran else "command failed: "
            return self._move(action_id, "failed", what + res.describe(), **out)
        if rec.verify is None:
            return self._move(action_id, "succeeded", "command succeeded (no verify command)", **out)
        v = self.executor.run(rec.run_on, rec.verify, rec.timeout)
        if v.ok:
            return self._move(action_id, "succeeded", "command and verify succeeded", **out)
        return self._move(action_id, "failed", f"verify failed: {v.describe()} {v.stderr.strip()[-500:]}".strip(),
                          **out)  # fmt: skip

    def approve(self, action_id: int, by: str = "") -> ActionRecord:
        """A person approves a proposal: limits are checked now, then the action is carried out at once."""
        now = time.time()
        with self.db.transaction():
            rec = self.db.get(action_id)
            if rec.state == "proposed" and rec.window_end <= now:
                old, new = self.db.transition(action_id, "expired", message="forecast window ended before approval")
                expired = self._audit_record(new, old, "expired", new.message)
            else:
                expired = None
                if rec.state != "proposed":
                    raise IllegalTransition(
                        f"action {action_id} is {rec.state}; only a proposed action can be approved"
                    )
                limit = blocking_limit(self.db, self.cfg.limits, rec.kind, rec.entity, rec.fleet, now)
                if limit is not None:
                    raise ActionError(f"action {action_id} not approved: {limit}; try again later")
                why = f"approved by {by}" if by else "approved"
                old, new = self.db.transition(action_id, "approved", message=why, claimed=now,
                                              owner_pid=self._me[0], owner_start=self._me[1])  # fmt: skip
        if expired is not None:
            self.auditor.record(expired)
            raise ActionError(f"action {action_id} expired: its forecast window ended before approval")
        self.auditor.record(self._audit_record(new, old, "approved", new.message))
        return self._carry_out(action_id)

    def reject(self, action_id: int, by: str = "") -> ActionRecord:
        return self._move(action_id, "rejected", f"rejected by {by}" if by else "rejected")

    def undo(self, action_id: int) -> ActionRecord:
        """Run the action's undo command; on success it becomes `undone`, otherwise it stays as it was."""
        rec = self.db.get(action_id)
        if "undone" not in TRANSITIONS[rec.state]:
            raise IllegalTransition(f"action {action_id} is {rec.state}; only a finished action can be undone")
        if rec.undo is None:
            raise ActionError(f"action {action_id} ({rec.action}) has no undo command")
        res = self.executor.run(rec.run_on, rec.undo, rec.timeout)
        if not res.ok:
            msg = f"undo failed: {res.describe()} {res.stderr.strip()[-500:]}".strip()
            self.auditor.record({**self._audit_record(rec, rec.state, rec.state, msg), "event": "undo_failed"})
            raise ActionError(f"action {action_id}: {msg}")
        return self._move(action_id, "undone", "undo command succeeded")

    def resolve(self, action_id: int, state: str, by: str = "") -> ActionRecord:
        """A person settles an `unknown` action (no verify command could decide) as succeeded or failed."""
        if state not in ("succeeded", "failed"):
            raise ActionError(f"resolve to succeeded or failed, not {state!r}")
        rec = self.db.get(action_id)
        if rec.state != "unknown":
            raise IllegalTransition(f"action {action_id} is {rec.state}; only an unknown action can be resolved")
        return self._move(action_id, state, f"resolved as {state} by {by}" if by else f"resolved as {state}")

    # ---- crash recovery ---------------------------------------------------------------------------------

    def recover(self) -> list[ActionRecord]:
        """Settle what a dead process left behind; an action is never re-run blindly.

        `running` whose owner died -> `unknown`, then its verify command decides succeeded or failed (without
        one it stays unknown for a person). A leftover local process group of that action is killed first, so
        verify judges a settled host. `approved`/`auto` claims whose owner died before starting are carried
        out now: they were decided, and never ran.
        """
        settled = []
        for rec in self.db.list(("running", "approved", "auto")):
            if _alive(rec.owner_pid, rec.owner_start):
                continue
            if rec.state != "running":
                if rec.window_end > time.time():
                    with contextlib.suppress(IllegalTransition):  # another process took it first
                        settled.append(self._carry_out(rec.id))
                continue
            if _alive(rec.child_pid, rec.child_start) and rec.child_pid is not None:
                with contextlib.suppress(OSError):
                    os.killpg(rec.child_pid, signal.SIGTERM)
            why = f"owner process {rec.owner_pid} died while running it; verifying, not re-running"
            try:
                self._move(rec.id, "unknown", why)
            except IllegalTransition:  # another process is already recovering it
                continue
            if rec.verify is None:
                settled.append(self._move_note(rec.id, "no verify command: check the host, then undo or leave it"))
                continue
            v = self.executor.run(rec.run_on, rec.verify, rec.timeout)
            state = "succeeded" if v.ok else "failed"
            settled.append(self._move(rec.id, state, f"verify after crash: {v.describe()}", finished=time.time()))
        return settled

    # ---- queries ----------------------------------------------------------------------------------------

    def list(self, states: Sequence[str] = (), limit: int = 1000) -> list[ActionRecord]:
        return self.db.list(states, limit)

    def get(self, action_id: int) -> ActionRecord:
        return self.db.get(action_id)

    def history(self, action_id: int) -> list[dict[str, Any]]:
        """This action's audit records, oldest first."""
        return [r for r in self.auditor.log.read() if r.get("id") == action_id]

    def recurring(self, now: float | None = None) -> list[Recurring]:
        """Entities acted on at least [recurring] count times within [recurring] window."""
        return _recurring(self.db, self.cfg, now)

    def close(self) -> None:
        self.executor.close()
        self.db.close()

    # ---- helpers ----------------------------------------------------------------------------------------

    def _move(self, action_id: int, state: str, message: str, **fields: Any) -> ActionRecord:
        old, rec = self.db.transition(action_id, state, message=message, **fields)
        self.auditor.record(self._audit_record(rec, old, state, message))
        return rec

    def _move_note(self, action_id: int, message: str) -> ActionRecord:
        self.db.update(action_id, message=message)
        rec = self.db.get(action_id)
        self.auditor.record({**self._audit_record(rec, rec.state, rec.state, message), "event": "note"})
        return rec

    @staticmethod
    def _audit_record(rec: ActionRecord, old: str, new: str, message: str) -> dict[str, Any]:
        return {
            "event": "transition", "id": rec.id, "from": old, "state": new, "message": message,
            "policy": rec.policy, "action": rec.action, "kind": rec.kind, "entity": rec.entity, "host": rec.host,
            "run_on": rec.run_on, "mode": rec.mode, "probability": rec.probability,
            "horizon_hours": rec.horizon_hours, "command": rec.command, "returncode": rec.returncode,
            "stdout": rec.stdout, "stderr": rec.stderr, "truncated": rec.truncated,
        }  # fmt: skip
