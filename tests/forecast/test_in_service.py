"""Retired drives (left the data early without a failure) and the model's figures without them; failed and
healthy drives split by whether a critical SMART counter warned."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from pmaintd.forecast.backblaze import read_file
from pmaintd.forecast.disk import by_warning, in_service, retired_drives


def _csv(path: Path, rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """A Backblaze file with these (date, serial, failure) rows, read back as `backblaze.read_files` reads each file."""
    lines = ["date,serial_number,model,failure"] + [f"{d},{s},M1,{f}" for d, s, f in rows]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return read_file(path)


def test_retired_are_healthy_drives_ending_before_every_file_they_are_in(tmp_path: Path) -> None:
    a = _csv(tmp_path / "a.csv.gz", [
        ("2016-01-01", "STAYS", 0), ("2016-01-10", "STAYS", 0),
        ("2016-01-01", "PULLED", 0), ("2016-01-05", "PULLED", 0),
        ("2016-01-01", "FAILED", 0), ("2016-01-06", "FAILED", 1),
        ("2016-01-01", "MOVED", 0), ("2016-01-04", "MOVED", 0),
    ])
    # A later file holds MOVED up to its own last day: it did not leave, it is recorded elsewhere.
    b = _csv(tmp_path / "b.csv.gz", [("2016-02-01", "MOVED", 0), ("2016-02-20", "MOVED", 0),
                                     ("2016-02-20", "OTHER", 0)])
    assert sorted(retired_drives([a, b]).to_list()) == ["PULLED"]
    assert sorted(retired_drives([a]).to_list()) == ["MOVED", "PULLED"]


def _days(entity: str, end: datetime, scores: list[float], failure: datetime | None,
          err_sum: list[float] | None = None) -> pl.DataFrame:
    times = [end - timedelta(days=len(scores) - 1 - i) for i in range(len(scores))]
    return pl.DataFrame({
        "serial_number": [entity] * len(scores), "date": times, "score": scores,
        "failure_time": [failure] * len(scores), "err_sum__last": err_sum or [0.0] * len(scores),
    }, schema_overrides={"date": pl.Datetime("us", "UTC"), "failure_time": pl.Datetime("us", "UTC")})


def test_in_service_drops_only_retired_healthy_drives_and_counts_their_false_alarms() -> None:
    end = datetime(2016, 9, 30, tzinfo=UTC)
    frames = [_days(f"H{i}", end, [0.01] * 8, None) for i in range(200)]
    frames.append(_days("PULLED", end - timedelta(days=40), [0.01] * 6 + [0.9, 0.9], None))
    frames.append(_days("LOUD", end, [0.01] * 7 + [0.8], None))
    fail = end - timedelta(days=3)
    frames.append(_days("F1", fail - timedelta(days=1), [0.5] * 8, fail))
    frames.append(_days("F2", fail - timedelta(days=1), [0.7] * 8, fail))
    scored = pl.concat(frames)
    out = in_service(scored, pl.Series(["PULLED", "F2"]), 168.0, threshold=0.6)
    # 202 healthy drives: 1% FAR lets 2 alarm (PULLED, LOUD); PULLED is the retired one.
    assert (out["healthy_retired"], out["false_alarms_at_far_0.01"], out["of_them_retired"]) == (1, 2, 1)
    # Without PULLED: 201 healthy, 2 failed drives kept (a failed drive is never "retired").
    assert (out["entities_healthy"], out["entities_failed"]) == (201, 2)
    assert out["far_at_threshold"] == 1 / 201 and out["recall_at_threshold"] == 0.5


def test_by_warning_splits_drives_by_a_critical_counter_inside_their_window() -> None:
    end = datetime(2016, 9, 30, tzinfo=UTC)
    frames = [_days(f"H{i}", end, [0.01] * 8, None) for i in range(199)]
    # A warning on a healthy drive's first day is outside its last 7 days: it counts as silent.
    frames.append(_days("OLDWARN", end, [0.01] * 8, None, [4.0] + [0.0] * 7))
    frames.append(_days("WARNED", end, [0.01] * 7 + [0.9], None, [0.0] * 6 + [2.0, 3.0]))
    frames.append(_days("QUIET", end, [0.01] * 7 + [0.8], None))
    fail = end - timedelta(days=3)
    frames.append(_days("F1", fail - timedelta(days=1), [0.95] * 8, fail, [0.0] * 7 + [1.0]))
    frames.append(_days("F2", fail - timedelta(days=1), [0.85] * 8, fail))
    frames.append(_days("F3", fail - timedelta(days=1), [0.3] * 8, fail, [8.0] * 8))
    out = by_warning(pl.concat(frames), 168.0)
    # 202 healthy drives: the 1% FAR point lets WARNED and QUIET alarm; F1 and F2 score above them, F3 below.
    assert out == {
        "failed_warned": 2, "failed_warned_alarms_at_far_0.01": 1,
        "failed_silent": 1, "failed_silent_alarms_at_far_0.01": 1,
        "healthy_warned": 1, "healthy_warned_alarms_at_far_0.01": 1,
        "healthy_silent": 201, "healthy_silent_alarms_at_far_0.01": 1,
    }
