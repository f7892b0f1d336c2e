"""Labels from incidents, and the incidents file format (bad rows named by line number, nothing half-read)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from pmaintd.forecast.labels import Incident, IncidentFileError, incidents_frame, label_rows, parse_incidents
from pmaintd.telemetry import parse_time


def test_positive_only_within_horizon_and_rows_from_failure_on_dropped() -> None:
    days = [datetime(2016, 1, 1) + timedelta(days=i) for i in range(12)]
    feats = pl.DataFrame({"serial_number": ["A"] * 12 + ["B"] * 12, "date": days * 2}).with_columns(
        pl.col("date").dt.replace_time_zone("UTC")
    )
    fails = incidents_frame([Incident(parse_time("2016-01-10T00:00:00Z"), "disk", "A")], "disk")
    out = label_rows(feats, fails, 168, "serial_number", "date")
    a = out.filter(pl.col("serial_number") == "A")
    assert a.height == 9  # Jan 1..9; the failure day and after are gone
    assert a["label"].to_list() == [0, 0, 1, 1, 1, 1, 1, 1, 1]  # Jan 3..9 lie within 7 days before Jan 10
    assert out.filter(pl.col("serial_number") == "B")["label"].sum() == 0


def test_rows_whose_outcome_is_not_known_yet_are_dropped_not_called_negative() -> None:
    """Live telemetry ends now: a healthy entity's last horizon of rows may hold tomorrow's failure ramping up,
    so with `known_until` they have no label. An entity that did fail keeps every row before its failure."""
    days = [datetime(2016, 1, 1) + timedelta(days=i) for i in range(12)]
    feats = pl.DataFrame({"serial_number": ["A"] * 12 + ["B"] * 12, "date": days * 2}).with_columns(
        pl.col("date").dt.replace_time_zone("UTC")
    )
    fails = incidents_frame([Incident(parse_time("2016-01-12T00:00:00Z"), "disk", "A")], "disk")
    end = feats["date"].max()  # Jan 12
    out = label_rows(feats, fails, 72, "serial_number", "date", known_until=end)
    a = out.filter(pl.col("serial_number") == "A")
    assert a["label"].to_list() == [0] * 8 + [1] * 3  # Jan 1..11 kept: A's outcome is known
    b = out.filter(pl.col("serial_number") == "B")
    assert b["date"].max() == end - timedelta(days=3) and b["label"].sum() == 0  # Jan 10..12 unknown yet
    assert label_rows(feats, fails, 72, "serial_number", "date").filter(pl.col("serial_number") == "B").height == 12


def test_csv_and_json_lines(tmp_path: Path) -> None:
    c = tmp_path / "i.csv"
    c.write_text("time,kind,entity,cause\n2016-01-10T00:00:00Z,disk,ZA1,media\n2016-01-11,host,web-1,\n")
    got = parse_incidents(c)
    assert [(i.kind, i.entity, i.cause) for i in got] == [("disk", "ZA1", "media"), ("host", "web-1", "")]
    j = tmp_path / "i.jsonl"
    j.write_text('{"time": "2016-01-10T00:00:00Z", "kind": "disk", "entity": "ZA1"}\n\n'
                 '{"time": 1452470400, "kind": "network", "entity": "sw1/Gi0/1", "cause": "optic"}\n')
    got = parse_incidents(j)
    assert got[1].time == 1452470400 * 10**9 and got[1].cause == "optic"


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    c = tmp_path / "bad.csv"
    c.write_text("time,kind,entity\n2016-01-10,disk,A\nyesterday,disk,B\n2016-01-10,printer,C\n2016-01-10,disk,\n")
    with pytest.raises(IncidentFileError) as e:
        parse_incidents(c)
    assert [n for n, _m in e.value.problems] == [3, 4, 5]
    assert "line 3: time 'yesterday'" in str(e.value) and "printer" in str(e.value) and "missing entity" in str(e.value)
    j = tmp_path / "bad.jsonl"
    j.write_text('{"time": "2016-01-10", "kind": "disk", "entity": "A"}\n{"time": "2016-01-10", "kind": "disk"\n[1]\n')
    with pytest.raises(IncidentFileError) as e:
        parse_incidents(j)
    assert [n for n, _m in e.value.problems] == [2, 3]


def test_csv_without_required_header_is_refused(tmp_path: Path) -> None:
    c = tmp_path / "h.csv"
    c.write_text("when,what\n2016-01-10,disk\n")
    with pytest.raises(IncidentFileError, match="header lacks time, kind, entity"):
        parse_incidents(c)
