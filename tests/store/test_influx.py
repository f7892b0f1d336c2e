"""InfluxStore against a real influxd 1.x: v1 writes and InfluxQL reads, the v2 client path, auth, 4xx."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pmaintd.collect import build
from pmaintd.config import Config, StoreConfig
from pmaintd.store import Store, open_store
from pmaintd.store.influx import InfluxStore, quote_string, redact_url
from pmaintd.telemetry import Point
from tests.services import Influxd, ServiceUnavailable, start_influxd
from tests.store.v2shim import V2Shim

_dbs = itertools.count()
T0 = (time.time_ns() // 10**9 - 3600) * 10**9
"""An hour ago: inside the retention of the databases the store creates."""


def fresh_db() -> str:
    return f"t{next(_dbs)}_{time.monotonic_ns()}"


@pytest.fixture
def v1(influxd: Influxd, tmp_path: Path) -> Iterator[InfluxStore]:
    """An InfluxStore on its own (not yet existing) database of the shared influxd."""
    cfg = StoreConfig(kind="influxdb", url=influxd.url, database=fresh_db(), batch_size=100)
    st = InfluxStore(cfg, tmp_path / "state")
    yield st
    st.close()


def _rows(frame: pl.DataFrame) -> list[dict[str, object]]:
    return frame.to_dicts()


def test_collected_points_round_trip_with_same_values_and_tags(influxd: Influxd, tmp_path: Path) -> None:
    cfg = StoreConfig(kind="influxdb", url=influxd.url, database=fresh_db(), batch_size=7)
    st = open_store(cfg, tmp_path)
    assert isinstance(st, InfluxStore) and isinstance(st, Store)
    points: list[Point] = []
    for collector in build(Config(), only=["diskio", "host"]):
        for target in collector.targets():
            points += collector.collect(target)
    assert {p.measurement for p in points} >= {"diskio", "cpu", "mem", "system"}
    st.write(points)
    assert st.points_written == len(points) and st.points_spooled == 0
    for m in {p.measurement for p in points}:
        mine = [p for p in points if p.measurement == m]
        frame = st.query(m, start=min(p.time for p in mine), stop=max(p.time for p in mine) + 1)
        assert frame.schema["time"] == pl.Datetime("us", "UTC")
        assert frame.height == len(mine)
        got = {(r["time"], tuple(sorted((k, r[k]) for k in mine[0].tags))): r for r in _rows(frame)}
        for p in mine:
            t = pl.Series([p.time // 1000]).cast(pl.Datetime("us", "UTC"))[0]
            row = got[(t, tuple(sorted(p.tags.items())))]
            for k, v in p.fields.items():
                assert row[k] == v and type(row[k]) is type(v), (m, k)
            for k, v in p.tags.items():
                assert row[k] == v
    stats = {s.measurement: s for s in st.stats()}
    assert stats["diskio"].points_24h == sum(p.measurement == "diskio" for p in points)
    assert stats["diskio"].newest == max(p.time for p in points if p.measurement == "diskio") // 1000 * 1000
    st.close()


def test_database_is_created_with_the_configured_retention(influxd: Influxd, tmp_path: Path) -> None:
    db = fresh_db()
    st = InfluxStore(StoreConfig(kind="influxdb", url=influxd.url, database=db, retention="3d"), tmp_path)
    st.write([Point("m", {}, {"v": 1.0})])
    rps = influxd.query("SHOW RETENTION POLICIES", db=db)["results"][0]["series"][0]["values"]
    assert [r[1] for r in rps if r[4]] == ["72h0m0s"]
    st.close()


def test_tag_filters_are_quoted_and_match_hostile_values(v1: InfluxStore) -> None:
    evil = ["o'brien\\", 'x" OR 1=1 --', "a\nb", "C:\\ Label", "plain"]
    v1.write([Point("interface", {"ifAlias": a, "ifName": f"e{i}"}, {"ifHCInOctets": i}, T0 + i * 1000)
              for i, a in enumerate(evil)])
    for i, a in enumerate(evil):
        frame = v1.query("interface", tags={"ifAlias": a})
        assert frame["ifName"].to_list() == [f"e{i}"], a
        assert frame["ifHCInOctets"].to_list() == [i]
    both = v1.query("interface", tags={"ifAlias": [evil[0], evil[4]], "ifName": ["e0", "e4", "e9"]})
    assert sorted(both["ifName"].to_list()) == ["e0", "e4"]
    assert v1.query("interface", tags={"ifAlias": "nope"}).columns == ["time"]
    window = v1.query("interface", start=T0 + 1000, stop=T0 + 3000)
    assert sorted(window["ifHCInOctets"].to_list()) == [1, 2]
    assert quote_string("a'b\\") == "'a\\'b\\\\'"


def test_field_types_come_back_typed(v1: InfluxStore) -> None:
    v1.write([Point("smart_device", {"serial_no": "S1"},
                    {"health_ok": True, "temp_c": 41, "model": "X", "percentage_used": 3.5, "big": 2**64 - 1},
                    T0)])
    f = v1.query("smart_device")
    assert f.schema == {"time": pl.Datetime("us", "UTC"), "serial_no": pl.Utf8, "big": pl.Float64,
                        "health_ok": pl.Boolean, "model": pl.Utf8, "percentage_used": pl.Float64,
                        "temp_c": pl.Int64}
    assert f.row(0)[1:] == ("S1", float(2**64 - 1), True, "X", 3.5, 41)


def test_bad_data_is_rejected_once_counted_and_not_spooled(
    v1: InfluxStore, caplog: pytest.LogCaptureFixture
) -> None:
    v1.write([Point("m", {}, {"v": 1}, T0)])
    caplog.set_level(logging.ERROR, "pmaintd.store.influx")
    for i in range(3):  # "v" is an integer field now: a string is a field type conflict (400)
        v1.write([Point("m", {}, {"v": "text"}, T0 + (i + 1) * 1000)])
    assert v1.points_rejected == 3
    assert v1.points_spooled == 0 and v1.spool_pending_points() == 0
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "field type conflict" in msgs[0]
    assert "field type conflict" in (v1.last_error or "")
    v1.write([Point("m", {}, {"v": 2}, T0 + 9000)])  # the store still works afterwards
    assert v1.query("m")["v"].to_list() == [1, 2]


def test_v2_client_path_through_shim(influxd: Influxd, tmp_path: Path) -> None:
    """influxdb-client's write API, with a token, through the /api/v2/write -> /write shim (TESTING.md)."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    shim = V2Shim(influxd.url, "s3cret-token").start()
    bucket = fresh_db()
    influxd.query(f'CREATE DATABASE "{bucket}"')
    try:
        cfg = StoreConfig(kind="influxdb", url=shim.url, api="v2", bucket=bucket, database=bucket, org="ops",
                          token_file=token_file, batch_size=2)
        st = InfluxStore(cfg, tmp_path / "state")
        pts = [Point("diskio", {"host": "h", "name": f"sd{i}"}, {"reads": i, "io_time": i / 2}, T0 + i)
               for i in range(0, 5000, 1000)]
        st.write(pts)
        assert st.points_written == 5
        writes = [s for s in shim.seen if s.path == "/api/v2/write"]
        assert len(writes) == 3  # batch_size 2
        assert {(s.query["bucket"], s.query["org"], s.query["precision"], s.encoding) for s in writes} == {
            (bucket, "ops", "us", "gzip")
        }
        frame = st.query("diskio")  # InfluxQL on /query through the shim, with the token
        assert frame["reads"].to_list() == [0, 1000, 2000, 3000, 4000]
        assert frame["time"].dt.epoch("us").to_list() == [p.time // 1000 for p in pts]
        assert all(s.authorization == "Token s3cret-token" for s in shim.seen)
        st.close()
    finally:
        shim.stop()


def test_v2_wrong_token_is_spooled_not_lost(influxd: Influxd, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("wrong")
    shim = V2Shim(influxd.url, "right").start()
    try:
        cfg = StoreConfig(kind="influxdb", url=shim.url, api="v2", bucket="b", org="o", token_file=token_file)
        st = InfluxStore(cfg, tmp_path / "state")
        st.write([Point("m", {}, {"v": 1})])
        assert st.points_written == 0 and st.spool_pending_points() == 1
        assert "unauthorized" in (st.last_error or "")
        st.close()
    finally:
        shim.stop()


@pytest.fixture
def auth_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """Its own influxd with authentication on and an admin user `admin` / `pa55 word`."""
    try:
        (tmp_path / "influxd").mkdir()
        srv = start_influxd(tmp_path / "influxd")
    except ServiceUnavailable as exc:
        from tests.conftest import unavailable

        unavailable(str(exc))
    srv.query("CREATE USER admin WITH PASSWORD 'pa55 word' WITH ALL PRIVILEGES")
    srv.stop()
    conf = srv.config_path.read_text().replace("log-enabled = false", "log-enabled = false\n  auth-enabled = true")
    srv.config_path.write_text(conf)
    srv.restart()
    yield srv
    srv.stop()


def test_v1_auth_from_password_file_never_shown(
    auth_influxd: Influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pw = tmp_path / "pw"
    pw.write_text("pa55 word\n")
    cfg = StoreConfig(kind="influxdb", url=auth_influxd.url, database="authdb", username="admin", password_file=pw)
    st = InfluxStore(cfg, tmp_path / "state")
    st.write([Point("m", {"k": "v"}, {"f": 1.5}, T0)])
    assert st.points_written == 1
    assert st.query("m")["f"].to_list() == [1.5]
    assert st.location == auth_influxd.url
    bad = tmp_path / "bad"
    bad.write_text("wrong")
    st2 = InfluxStore(cfg.model_copy(update={"password_file": bad}), tmp_path / "state2")
    st2.write([Point("m", {}, {"f": 2.0})])
    assert st2.points_written == 0 and st2.spool_pending_points() == 1  # auth failure: kept, not dropped
    for text in [caplog.text, st2.last_error or "", st.location, repr(st.counters())]:
        assert "pa55" not in text and "wrong" not in text
    st.close()
    st2.close()


def test_location_hides_credentials_in_url() -> None:
    assert redact_url("http://u:p%40ss@db.example:8086/") == "http://db.example:8086"


def test_same_frame_as_sqlite_for_the_same_points(v1: InfluxStore, tmp_path: Path) -> None:
    """Consumers (features, status) cannot tell the stores apart: same columns, dtypes and values."""
    from pmaintd.store.sqlite import SqliteStore

    lite = SqliteStore(tmp_path / "lite.db")
    points = [
        Point("smart_device", {"serial_no": f"S{i % 3}", "model": "WDC WD40"} | ({"wwn": "5000c5"} if i % 2 else {}),
              {"temp_c": 30 + i, "health_ok": i != 4, "percentage_used": i / 3, "firmware": f"v{i}"},
              T0 + i * 1_000_123)
        for i in range(9)
    ]
    for st in (lite, v1):
        st.write(points)
    keys = ["serial_no", "time"]
    a = lite.query("smart_device", tags={"model": "WDC WD40"}).sort(keys)
    b = v1.query("smart_device", tags={"model": "WDC WD40"}).sort(keys)
    assert a.schema == b.schema
    assert a.equals(b)
    lite.close()


def test_reading_needs_no_writable_state_dir(v1: InfluxStore, influxd: Influxd, tmp_path: Path) -> None:
    """`status` as another user: stats and queries never open the spool in the state dir."""
    v1.write([Point("m", {}, {"v": 1.0}, T0)])
    ro = InfluxStore(v1.cfg, tmp_path / "does-not-exist")
    assert [s.measurement for s in ro.stats()] == ["m"] and ro.query("m")["v"].to_list() == [1.0]
    ro.close()
    assert not (tmp_path / "does-not-exist").exists()
