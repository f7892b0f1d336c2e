"""`Store.stats()` (what `pmaintd status` shows): points of the last 24 h and the newest point, from bounded reads.

The same history goes into the sqlite store and a real influxd 1.6, and both must answer the same: points
outside the window are not counted, a measurement quiet for months (or since before 1970) still shows its newest
time, a point stamped ahead of now counts and is the newest. Against InfluxDB every statement `stats()` sends is
recorded (through the loopback proxy of v2shim) and must carry a time bound: a count over all time is what made
`status` take minutes on years of Telegraf data.
"""

from __future__ import annotations

import itertools
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmaintd.config import StoreConfig
from pmaintd.store import RECENT_WINDOW_NS, MeasurementStats, Store
from pmaintd.store.influx import InfluxStore
from pmaintd.store.sqlite import SqliteStore
from pmaintd.telemetry import Point
from tests.services import Influxd
from tests.store.v2shim import V2Shim

H = 3600 * 10**9
D = 24 * H
NOW = time.time_ns() // 1000 * 1000  # whole microseconds, as InfluxDB keeps them
_dbs = itertools.count()


def history() -> list[Point]:
    """cpu: 5 points in the window (one stamped 2 h ahead of now), 3 older; diskio: quiet for 200 days;
    legacy: one point from 1960 only (before the epoch: the last, unbounded-below search step)."""
    cpu = [
        *(Point("cpu", {"host": "a"}, {"usage_idle": 50.0, "usage_user": 1.0}, NOW - t)
          for t in (1 * H, 2 * H, 23 * H, 25 * H, 40 * D, 400 * D)),
        Point("cpu", {"host": "b"}, {"usage_idle": 60.0}, NOW - H // 2),
        Point("cpu", {"host": "b"}, {"usage_idle": 70.0, "usage_user": 2.0}, NOW + 2 * H),
    ]
    diskio = [Point("diskio", {"host": "a", "name": f"sd{c}"}, {"reads": 1, "writes": 2}, NOW - t)
              for c in "ab" for t in (200 * D, 201 * D, 1100 * D)]
    legacy = [Point("legacy", {"host": "a"}, {"v": True}, -315_619_200 * 10**9)]  # 1960-01-01
    return cpu + diskio + legacy


EXPECTED = [
    MeasurementStats("cpu", 5, NOW + 2 * H),
    MeasurementStats("diskio", 0, NOW - 200 * D),
    MeasurementStats("legacy", 0, -315_619_200 * 10**9),
]


@pytest.fixture
def recorded_influx(influxd: Influxd, tmp_path: Path) -> Iterator[tuple[InfluxStore, V2Shim]]:
    """An InfluxStore (v1, retention 100 years so the old points are kept) that reaches the real influxd
    through the recording loopback proxy."""
    shim = V2Shim(influxd.url, token=None).start()
    cfg = StoreConfig(kind="influxdb", url=shim.url, database=f"stats{next(_dbs)}_{time.monotonic_ns()}",
                      retention="36500d")
    st = InfluxStore(cfg, tmp_path / "state")
    try:
        yield st, shim
    finally:
        st.close()
        shim.stop()


def statements(shim: V2Shim) -> list[list[str]]:
    """The InfluxQL of every /query request the proxy saw, split into statements."""
    out = []
    for s in shim.seen:
        if s.path == "/query":
            q = dict(urllib.parse.parse_qsl(b"".join(s.lines).decode()))["q"]
            out.append([x.strip() for x in q.split(";")])
    return out


def test_sqlite_counts_the_window_only_and_finds_old_newest_times(tmp_path: Path) -> None:
    st: Store = SqliteStore(tmp_path / "db", retention_s=36500 * 86400.0)
    st.write(history())
    assert st.stats() == EXPECTED
    assert st.query("cpu").height == 8, "nothing was lost: the window limits the count, not the data"
    st.close()


def test_influx_counts_the_window_only_and_every_read_is_time_bounded(
    recorded_influx: tuple[InfluxStore, V2Shim],
) -> None:
    st, shim = recorded_influx
    st.write(history())
    assert st.points_written == len(history()) and st.points_rejected == 0
    shim.seen.clear()
    assert st.stats() == EXPECTED
    selects = [x for req in statements(shim) for x in req if x.startswith("SELECT")]
    assert selects and all(re.search(r" WHERE time [<>]=? -?\d+", x) for x in selects), selects
    # One request per round, not one per measurement: SHOW MEASUREMENTS, the window, then the backward search.
    assert len(statements(shim)) < 20


def test_an_empty_store_lists_nothing(recorded_influx: tuple[InfluxStore, V2Shim], tmp_path: Path) -> None:
    st, _ = recorded_influx
    assert st.stats() == []
    lite = SqliteStore(tmp_path / "db")
    assert lite.stats() == []
    lite.close()


def test_window_edge_and_many_series_match_between_stores(
    recorded_influx: tuple[InfluxStore, V2Shim], tmp_path: Path
) -> None:
    """300 series (many statements' worth of GROUP BY * rows), points on both sides of the 24 h edge: both stores
    count exactly those written inside it."""
    st, _ = recorded_influx
    lite = SqliteStore(tmp_path / "db", retention_s=36500 * 86400.0)
    now = time.time_ns() // 1000 * 1000
    edge = now - RECENT_WINDOW_NS
    points = [Point("smart_device", {"serial_no": f"S{i}"}, {"temp_c": 40 + i % 7}, t)
              for i in range(300) for t in (edge + 60 * 10**9 + i * 1000, edge - 60 * 10**9 - i * 1000)]
    points += [Point("smart_device", {"serial_no": f"S{i}"}, {"temp_c": 1}, now - i * 10**9) for i in range(0, 300, 3)]
    for store in (st, lite):
        store.write(points)
        assert store.stats() == [MeasurementStats("smart_device", 400, now)]
    lite.close()


def test_v3_sends_one_statement_per_request(influxd: Influxd, tmp_path: Path) -> None:
    """InfluxDB 3.x's /query takes a single statement: the same answers, one statement to a request (3.x itself
    cannot run here; the proxy stands in front of 1.6, as for the v2 tests)."""
    db = f"stats{next(_dbs)}_{time.monotonic_ns()}"
    v1 = InfluxStore(StoreConfig(kind="influxdb", url=influxd.url, database=db, retention="36500d"), tmp_path / "a")
    v1.write(history())
    shim = V2Shim(influxd.url, token=None).start()
    v3 = InfluxStore(StoreConfig(kind="influxdb", url=shim.url, api="v3", database=db), tmp_path / "b")
    try:
        assert v3.stats() == EXPECTED
        assert statements(shim) and all(len(req) == 1 for req in statements(shim))
    finally:
        v3.close()
        v1.close()
        shim.stop()
