"""Running collectors: one poll of one target with its timeout, and one pass over every enabled target.

`collect --once` uses `run_once`; the daemon schedules `poll` per target itself. A poll never raises: a
failure becomes the result's `error`, so one broken target cannot stop the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pmaintd.collect import CollectError, Collector, Target
from pmaintd.collect.runstate import RunRecord, RunState
from pmaintd.telemetry import SELF, FieldValue, Point, now_ns


@dataclass(frozen=True)
class PollResult:
    """One poll of one target: its points, or why it failed (a poll never raises; see `poll`)."""

    collector: str
    target: str
    started_ns: int
    duration_s: float
    points: list[Point] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def self_point(self) -> Point:
        """The self-metric `pmaintd_collector` point for this poll: tags collector, target; fields duration_s,
        success, points (and the error text when it failed)."""
        fields: dict[str, FieldValue] = {"duration_s": self.duration_s, "success": self.ok, "points": len(self.points)}
        if self.error is not None:
            fields["error"] = self.error
        return Point(SELF, {"collector": self.collector, "target": self.target}, fields, self.started_ns)

    def record(self, state: RunState) -> tuple[RunRecord | None, RunRecord]:
        """Store this result in the run state (see RunState.record)."""
        return state.record(
            self.collector, self.target, self.started_ns, self.duration_s, self.ok, self.error, len(self.points)
        )


def describe_failure(exc: BaseException) -> str:
    """A failed poll's `error` text. Expected failures (CollectError, OSError, TimeoutError) carry an
    operator-facing message; anything else is a bug, so its type is kept in front."""
    if isinstance(exc, CollectError | OSError | TimeoutError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def poll(collector: Collector, target: Target) -> PollResult:
    """Collect one target, giving up after `target.timeout` seconds.

    The collection runs in a daemon thread: a read that hangs (an NFS-backed /proc, a sensor that never
    answers) is abandoned and reported instead of blocking the pass or the process exit.
    """
    started = now_ns()
    t0 = time.monotonic()
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["points"] = collector.collect(target)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"collect-{collector.name}-{target.name}", daemon=True)
    worker.start()
    worker.join(target.timeout)
    duration = time.monotonic() - t0
    if worker.is_alive():
        return PollResult(collector.name, target.name, started, duration, error=f"timed out after {target.timeout:g}s")
    if "error" in box:
        return PollResult(collector.name, target.name, started, duration, error=describe_failure(box["error"]))  # type: ignore[arg-type]
    return PollResult(collector.name, target.name, started, duration, list(box["points"]))  # type: ignore[call-overload]


def run_once(collectors: Sequence[Collector], state: RunState | None = None) -> list[PollResult]:
    """Poll every target of every collector once, in order; record each result when `state` is given."""
    results = []
    for c in collectors:
        for t in c.targets():
            res = poll(c, t)
            if state is not None:
                res.record(state)
            results.append(res)
    return results
