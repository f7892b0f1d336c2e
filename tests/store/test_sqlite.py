"""The embedded sqlite store: concurrent readers, retention, schema versions, field types, tag filters."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pmaintd.config import StoreConfig
from pmaintd.store import StoreError, open_store
from pmaintd.store.sqlite import SCHEMA_VERSION, SqliteStore
from pmaintd.telemetry import Point

NOW = time.time_ns()

_READER = """
import json, sys, time
from pathlib import Path
from pmaintd.store.sqlite import SqliteStore
st = SqliteStore(Path(sys.argv[1]))
print("open", flush=True)
seen = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    f = st.query("diskio")
    n = f.height
    kinds = {c: str(t) for c, t in f.schema.items()}
    stats = {s.measurement: s.points_24h for s in st.stats()}
    seen.append([n, stats.get("diskio", 0), kinds.get("model")])
    if n >= int(sys.argv[2]):
        break
    time.sleep(0.01)
print(json.dumps(seen), flush=True)
"""


def test_a_reader_process_reads_while_the_writer_writes(tmp_path: Path) -> None:
    db = tmp_path / "pmaintd.db"
    writer = SqliteStore(db)
    total = 40 * 250
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(db), str(total)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert reader.stdout is not None and reader.stdout.readline() == b"open\n"  # opened before any field exists
    for b in range(40):
        writer.write([
            Point("diskio", {"host": "h", "name": f"sd{i % 5}"}, {"reads": b * 250 + i, "model": "WDC"},
                  NOW + (b * 250 + i) * 1000)
            for i in range(250)
        ])
        time.sleep(0.005)
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err.decode()
    seen = json.loads(out)
    counts = [s[0] for s in seen]
    assert counts == sorted(counts), "a reader never sees data go backwards"
    assert counts[-1] == total and seen[-1][1] == total
    assert len(set(counts)) > 2, "the reader saw the writes arrive in steps"
    # Every read is a whole batch: never a half-written transaction.
    assert all(c % 250 == 0 for c in counts)
    # A field created after the reader opened still reads back as its real type.
    assert {s[2] for s in seen if s[0]} == {"String"}
    writer.close()


def test_retention_via_maintain_and_wal_truncated(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "db", retention_s=86400)
    old = [Point("cpu", {"host": "h"}, {"usage_idle": 50.0}, NOW - 2 * 86400 * 10**9 + i) for i in range(10)]
    new = [Point("cpu", {"host": "h"}, {"usage_idle": 60.0}, NOW - 3600 * 10**9 + i) for i in range(5)]
    st.write(old + new)
    assert st.query("cpu").height == 15
    st.maintain()
    assert st.query("cpu").height == 5
    assert st.query("cpu")["usage_idle"].to_list() == [60.0] * 5
    assert (tmp_path / "db-wal").stat().st_size == 0
    st.close()


def test_open_store_uses_retention_from_config(tmp_path: Path) -> None:
    st = open_store(StoreConfig(retention="2d"), tmp_path)
    assert isinstance(st, SqliteStore) and st.retention_s == 2 * 86400
    assert st.location == str(tmp_path / "pmaintd.db")
    st.close()


def test_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "db").close()
    with sqlite3.connect(tmp_path / "db") as c:
        c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than .* \({SCHEMA_VERSION}\)"):
        SqliteStore(tmp_path / "db")


def test_field_type_conflict_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "db")
    st.write([Point("smart_device", {"serial_no": "A"}, {"temp_c": 40, "ratio": 0.5}, NOW)])
    batch = [
        Point("smart_device", {"serial_no": "B"}, {"temp_c": 41}, NOW + 1000),
        Point("smart_device", {"serial_no": "C"}, {"temp_c": "hot"}, NOW + 2000),
    ]
    with pytest.raises(StoreError, match=r"smart_device\.temp_c is int, got str \('hot'\)"):
        st.write(batch)
    assert st.query("smart_device")["serial_no"].to_list() == ["A"]  # B was not half-written
    st.write([Point("smart_device", {"serial_no": "B"}, {"temp_c": 41, "ratio": 1}, NOW + 1000)])  # int -> float ok
    f = st.query("smart_device")
    assert f.schema["ratio"] == pl.Float64 and f["ratio"].to_list() == [0.5, 1.0]
    st.close()


def test_typed_columns_and_counter64(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "db")
    st.write([Point("interface", {"source": "sw1", "ifName": "Gi0/1"},
                    {"ifHCInOctets": 2**64 - 1, "up": True, "ifAlias": "x\n y=1", "ifSpeed": 10**9}, NOW)])
    f = st.query("interface")
    assert f.schema == {"time": pl.Datetime("us", "UTC"), "ifName": pl.Utf8, "source": pl.Utf8,
                        "ifAlias": pl.Utf8, "ifHCInOctets": pl.Float64, "ifSpeed": pl.Int64, "up": pl.Boolean}
    assert f.row(0)[1:] == ("Gi0/1", "sw1", "x\n y=1", float(2**64 - 1), 10**9, True)
    st.close()


def test_tag_filters(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "db")
    st.write([Point("diskio", {"host": h, "name": n}, {"reads": i}, NOW + i * 1000)
              for i, (h, n) in enumerate([("a", "sda"), ("a", "sdb"), ("b", "sda"), ("b", "sdc")])])

    def names(**tags: str | list[str]) -> list[str]:
        f = st.query("diskio", tags=tags)
        return sorted(f["name"].to_list()) if f.height else []

    assert names(host="a") == ["sda", "sdb"]
    assert names(host=["a", "b"], name="sda") == ["sda", "sda"]
    assert names(host="b", name=["sdb", "sdc"]) == ["sdc"]
    assert names(host="zzz") == []
    assert names(serial_no="X") == []  # a tag no series has matches nothing
    assert st.query("diskio", start=NOW + 1000, stop=NOW + 3000)["reads"].to_list() == [1, 2]
    st.close()


_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL, tags TEXT NOT NULL, UNIQUE (measurement, tags));
CREATE TABLE field_types (measurement TEXT NOT NULL, field TEXT NOT NULL, type TEXT NOT NULL,
    PRIMARY KEY (measurement, field)) WITHOUT ROWID;
CREATE TABLE samples (series INTEGER NOT NULL, field TEXT NOT NULL, time INTEGER NOT NULL, value,
    PRIMARY KEY (series, field, time)) WITHOUT ROWID;
CREATE INDEX samples_time ON samples (time);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO series VALUES (1, 'smart_device', '{"serial_no":"A"}'), (2, 'smart_device', '{"serial_no":"B"}');
INSERT INTO field_types VALUES ('smart_device', 'ok', 'bool'), ('smart_device', 'temp_c', 'int'),
    ('smart_device', 'used', 'float'), ('smart_device', 'model', 'str');
"""


def test_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file written by the first schema (one row per field, bools as 0/1) reads back the same after upgrade."""
    with sqlite3.connect(tmp_path / "db") as c:
        c.executescript(_V1)
        c.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)", [
            (1, "ok", NOW, 1), (1, "temp_c", NOW, 40), (1, "used", NOW, 0.5), (1, "model", NOW, "X 1"),
            (2, "ok", NOW, 0), (2, "temp_c", NOW + 1000, 41),
        ])
    st = SqliteStore(tmp_path / "db")
    f = st.query("smart_device")
    assert f.schema == {"time": pl.Datetime("us", "UTC"), "serial_no": pl.Utf8, "model": pl.Utf8,
                        "ok": pl.Boolean, "temp_c": pl.Int64, "used": pl.Float64}
    assert [r[1:] for r in f.rows()] == [("A", "X 1", True, 40, 0.5), ("B", None, False, None, None),
                                         ("B", None, None, 41, None)]
    assert [(s.measurement, s.points_24h) for s in st.stats()] == [("smart_device", 3)]
    st.close()
    with sqlite3.connect(tmp_path / "db") as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert c.execute("SELECT name FROM sqlite_master WHERE name IN ('samples', 'samples_time')").fetchall() == []


def test_rewriting_a_point_merges_its_fields_like_influxdb(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "db")
    st.write([Point("cpu", {"host": "h"}, {"usage_idle": 1.0, "usage_user": 0.25}, NOW)])
    st.write([Point("cpu", {"host": "h"}, {"usage_idle": 2.0, "usage_system": 0.5}, NOW)])
    assert st.query("cpu").row(0)[1:] == ("h", 2.0, 0.5, 0.25)
    assert st.stats()[0].points_24h == 1
    st.close()


@given(st.dictionaries(st.text(min_size=1, max_size=8),
                       st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(),
                                 st.floats(allow_nan=False, allow_infinity=False)),
                       min_size=1, max_size=5),
       st.dictionaries(st.text(min_size=1, max_size=8), st.text(min_size=1), max_size=3))
@settings(max_examples=150, deadline=None)
def test_any_fields_and_tags_read_back_exactly(fields: dict[str, object], tags: dict[str, str]) -> None:
    assume(not set(fields) & set(tags) and "time" not in set(fields) | set(tags))
    with tempfile.TemporaryDirectory() as d:
        s = SqliteStore(Path(d) / "db")
        p = Point("m", tags, fields, NOW)  # type: ignore[arg-type]
        s.write([p])
        row = s.query("m").to_dicts()[0]
        s.close()
    assert {k: row[k] for k in p.fields} == p.fields
    assert {k: row[k] for k in p.tags} == p.tags
    assert all(type(row[k]) is type(v) for k, v in p.fields.items())


def test_undecodable_text_and_name_clashes(tmp_path: Path) -> None:
    """A lone surrogate (bytes a collector could not decode) is stored as `?`, as InfluxDB gets it; a field
    named like a tag comes back as `<name>_1`, as InfluxQL names it."""
    s = SqliteStore(tmp_path / "db")
    s.write([Point("interface", {"ifName": "ge-0/0/0"}, {"ifAlias": "bad\udcff byte", "ifName": 7}, NOW)])
    row = s.query("interface").row(0, named=True)
    assert row["ifAlias"] == "bad? byte" and row["ifName"] == "ge-0/0/0" and row["ifName_1"] == 7
    s.close()
