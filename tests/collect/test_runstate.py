"""Run state (runstate.db) and the poll runner, with real sqlite files and real threads."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pmaintd.collect import CollectError, Target
from pmaintd.collect.runner import poll, run_once
from pmaintd.collect.runstate import FILENAME, RunState, RunStateError
from pmaintd.telemetry import Point


def test_record_tracks_outcome_last_success_and_failure_streak(tmp_path: Path) -> None:
    with RunState(tmp_path) as rs:
        prev, rec = rs.record("diskio", "web1", 1_000, 0.01, True, None, 5)
        assert prev is None and rec.ok and rec.last_ok_ns == 1_000 and rec.consecutive_failures == 0
        prev, rec = rs.record("diskio", "web1", 2_000, 0.02, False, "web1: cannot read /proc/diskstats", 0)
        assert prev is not None and prev.ok  # the caller sees the ok -> failed transition (log once)
        assert not rec.ok and rec.error == "web1: cannot read /proc/diskstats"
        assert rec.last_ok_ns == 1_000 and rec.consecutive_failures == 1
        _, rec = rs.record("diskio", "web1", 3_000, 0.02, False, "again", 0)
        assert rec.consecutive_failures == 2
        prev, rec = rs.record("diskio", "web1", 4_000, 0.01, True, "ignored when ok", 7)
        assert prev is not None and not prev.ok and rec.ok and rec.error is None
        assert rec.consecutive_failures == 0 and rec.last_ok_ns == 4_000
        rs.record("host", "web1", 4_500, 0.5, True, None, 40)
    with RunState(tmp_path) as rs:  # persisted
        assert [(r.collector, r.target, r.points) for r in rs.all()] == [("diskio", "web1", 7), ("host", "web1", 40)]
        j = rs.all()[0].to_json()
        assert j["last_run"] == "1970-01-01T00:00:00.000004Z" and j["ok"] is True


def test_readers_see_committed_runs_while_a_writer_works(tmp_path: Path) -> None:
    """WAL: a separate reader connection (like `status`) reads while the daemon's writer keeps recording."""
    writer = RunState(tmp_path)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            writer.record("host", "h", i, 0.1, True, None, i)
            i += 1

    th = threading.Thread(target=write)
    th.start()
    try:
        seen = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            with RunState(tmp_path) as reader:
                seen += [r.points for r in reader.all()]
    finally:
        stop.set()
        th.join()
        writer.close()
    assert seen and seen == sorted(seen)
    mode = sqlite3.connect(tmp_path / FILENAME).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


class _Collector:
    """A collector implementing the protocol directly, to drive the runner's failure paths."""

    def __init__(self, name: str, behaviour: str) -> None:
        self.name = name
        self.behaviour = behaviour

    def targets(self) -> Sequence[Target]:
        return [Target(name="t1", interval=60, timeout=0.3), Target(name="t2", interval=60, timeout=0.3)]

    def collect(self, target: Target) -> list[Point]:
        if self.behaviour == "fail" and target.name == "t1":
            raise CollectError("t1: cannot read /proc/stat: Permission denied")
        if self.behaviour == "bug":
            raise ZeroDivisionError("division by zero")
        if self.behaviour == "hang":
            time.sleep(2)
        return [Point("x", {"target": target.name}, {"v": 1})]


def test_one_failing_target_does_not_stop_the_others(tmp_path: Path) -> None:
    with RunState(tmp_path) as rs:
        results = run_once([_Collector("a", "fail"), _Collector("b", "ok")], rs)
        assert [(r.collector, r.target, r.ok) for r in results] == [
            ("a", "t1", False),
            ("a", "t2", True),
            ("b", "t1", True),
            ("b", "t2", True),
        ]
        assert results[0].error == "t1: cannot read /proc/stat: Permission denied"
        assert {(r.collector, r.target): r.ok for r in rs.all()}[("a", "t1")] is False
    point = results[0].self_point()
    assert point.measurement == "pmaintd_collector" and point.fields["success"] is False
    assert point.fields["error"] == results[0].error and point.tags == {"collector": "a", "target": "t1"}


def test_poll_reports_bugs_with_their_type_and_hangs_as_timeouts() -> None:
    bug = poll(_Collector("c", "bug"), Target("t1", 60, 1.0))
    assert bug.error == "ZeroDivisionError: division by zero"
    t0 = time.monotonic()
    hung = poll(_Collector("d", "hang"), Target("t1", 60, 0.2))
    assert time.monotonic() - t0 < 1.5
    assert hung.error == "timed out after 0.2s" and not hung.points


def test_readonly_view_for_status(tmp_path: Path) -> None:
    """`status` opens the run state read-only: it sees the runs and can change nothing."""
    with RunState(tmp_path) as rs:
        rs.record("host", "h", 1, 0.1, True, None, 3)
    with RunState(tmp_path, readonly=True) as ro:
        assert [(r.collector, r.points) for r in ro.all()] == [("host", 3)]
        with pytest.raises(RunStateError, match=r"runstate\.db"):
            ro.record("host", "h", 2, 0.1, False, "x", 0)
    with RunState(tmp_path, readonly=True) as ro:
        assert ro.all()[0].ok is True
    with pytest.raises(RunStateError, match="cannot open run state"):
        RunState(tmp_path / "absent", readonly=True)
