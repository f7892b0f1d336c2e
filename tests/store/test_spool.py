"""The spool: InfluxDB outages lose nothing, replay is ordered and exactly-once, the bound drops oldest.

Outages are real: each test runs its own influxd and kills (SIGKILL) and restarts it. Exactly-once and
order are checked on the wire by the recording proxy in v2shim.py, which sits between the store and
influxd and answers 503 while influxd is down.
"""

from __future__ import annotations

import gzip
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmaintd.config import StoreConfig
from pmaintd.store.influx import InfluxStore
from pmaintd.store.lineproto import to_line
from pmaintd.store.spool import Spool
from pmaintd.telemetry import Point
from tests.services import Influxd, ServiceUnavailable, start_influxd
from tests.store.v2shim import V2Shim

T0 = (time.time_ns() // 10**9 - 3600) * 10**9


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An influxd only this test kills and restarts (the session one is shared)."""
    work = tmp_path / "influxd"
    work.mkdir()
    try:
        srv = start_influxd(work)
    except ServiceUnavailable as exc:
        from tests.conftest import unavailable

        unavailable(str(exc))
    yield srv
    srv.stop()


@pytest.fixture
def proxy(own_influxd: Influxd) -> Iterator[V2Shim]:
    shim = V2Shim(own_influxd.url, token=None).start()
    yield shim
    shim.stop()


def pts(start: int, n: int, **extra: object) -> list[Point]:
    return [Point("diskio", {"host": "h1", "name": "sda"}, {"reads": i, **extra}, T0 + i * 1000)  # type: ignore[dict-item]
            for i in range(start, start + n)]


def store(url: str, state: Path, **kw: object) -> InfluxStore:
    return InfluxStore(StoreConfig(kind="influxdb", url=url, **{"batch_size": 10, **kw}), state)  # type: ignore[arg-type]


def stored_reads(srv: Influxd) -> list[int]:
    res = srv.query('SELECT "reads" FROM "diskio"')["results"][0]
    return [row[1] for s in res.get("series", []) for row in s["values"]]


def replay_until_empty(st: InfluxStore, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while st.spool_pending_points() and time.monotonic() < deadline:
        st.maintain()
        time.sleep(0.05)
    assert st.spool_pending_points() == 0, st.last_error


def test_outage_is_spooled_then_replayed_in_order_exactly_once(
    own_influxd: Influxd, proxy: V2Shim, tmp_path: Path
) -> None:
    st = store(proxy.url, tmp_path / "state")
    st.write(pts(0, 25))
    own_influxd.kill()
    st.write(pts(25, 25))  # 503 from the proxy: spooled, no exception
    st.write(pts(50, 5))  # within the pause: straight to the spool
    assert st.points_written == 25 and st.points_spooled == 30 and st.spool_pending_points() == 30
    assert "503" in (st.last_error or "") or "unavailable" in (st.last_error or "")
    own_influxd.restart()
    replay_until_empty(st)
    st.write(pts(55, 5))
    assert st.points_replayed == 30 and st.points_written == 30 and st.points_dropped == 0
    expected = [to_line(p).encode() for p in pts(0, 60)]
    assert proxy.acknowledged_lines() == expected  # every point once, in the order written
    assert stored_reads(own_influxd) == list(range(60))
    st.close()


def test_connection_refused_is_spooled_and_new_writes_wait_behind_the_spool(
    own_influxd: Influxd, tmp_path: Path
) -> None:
    st = store(own_influxd.url, tmp_path / "state")
    st.write(pts(0, 3))
    own_influxd.kill()
    st.write(pts(3, 12))
    assert st.spool_pending_points() == 12 and "Connection" in (st.last_error or "")
    own_influxd.restart()
    time.sleep(1.1)  # past the first pause: the next write replays the spool first, then sends
    st.write(pts(15, 5))
    assert st.spool_pending_points() == 0
    assert st.points_replayed == 12 and st.points_written == 8
    assert stored_reads(own_influxd) == list(range(20))
    st.close()


def test_a_new_process_replays_the_spool_left_by_the_previous_one(
    own_influxd: Influxd, proxy: V2Shim, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    own_influxd.kill()
    first = store(proxy.url, state)
    first.write(pts(0, 40))
    assert first.spool_pending_points() == 40
    first.close()  # the "process" ends with its writes only on disk
    own_influxd.restart()
    second = store(proxy.url, state)
    assert second.spool_pending_points() == 40
    second.write(pts(40, 10))  # a fresh store has no pause: replays first, then writes
    assert second.points_replayed == 40 and second.points_written == 10
    assert proxy.acknowledged_lines() == [to_line(p).encode() for p in pts(0, 50)]
    assert stored_reads(own_influxd) == list(range(50))
    second.close()


def test_bound_drops_the_oldest_and_counts_them(own_influxd: Influxd, tmp_path: Path) -> None:
    st = store(own_influxd.url, tmp_path / "state", spool_max_bytes=1024 * 1024, batch_size=100)
    own_influxd.kill()
    noise = [secrets.token_hex(1000) for _ in range(1500)]  # incompressible: ~1 KB per point gzip'd
    batch = [Point("diskio", {"host": "h1", "name": "sda"}, {"reads": i, "blob": noise[i]}, T0 + i * 1000)
             for i in range(1500)]
    for i in range(0, 1500, 100):
        st.write(batch[i : i + 100])
    assert st.points_spooled == 1500
    assert st.points_dropped > 0
    kept = st.spool_pending_points()
    assert kept + st.points_dropped == 1500
    assert st.counters()["spool_pending_bytes"] <= 1024 * 1024
    own_influxd.restart()
    replay_until_empty(st)
    # The newest survived, the oldest were dropped, none reordered.
    assert stored_reads(own_influxd) == list(range(1500 - kept, 1500))
    st.close()


def test_spool_order_persistence_and_bound(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=3000)
    bodies = [gzip.compress(os.urandom(900), 1) for _ in range(5)]
    for i, b in enumerate(bodies):
        sp.append(b, i + 1)
    assert sp.dropped == 1 + 2  # the two oldest records made room
    sp.close()
    again = Spool(tmp_path / "s.sqlite", max_bytes=3000)
    got = []
    while (rec := again.oldest()) is not None:
        got.append((rec.points, rec.body))
        again.remove(rec)
    assert got == [(3, bodies[2]), (4, bodies[3]), (5, bodies[4])]
    again.append(bodies[0], 7)  # ids keep growing after the spool was emptied: order holds
    assert again.oldest().points == 7  # type: ignore[union-attr]
    again.close()


_APPENDER = """
import gzip, sys
from pathlib import Path
from pmaintd.store.spool import Spool
sp = Spool(Path(sys.argv[1]), 1 << 30)
i = 0
while True:
    sp.append(gzip.compress(b"m v=%di %d\\n" % (i, i) * 200, 1), 200)
    i += 1
    if i == 20:
        print("ready", flush=True)
"""


def test_spool_survives_sigkill_mid_append(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sp = Spool(path, 1 << 30)
    n = 0
    while (rec := sp.oldest()) is not None:
        assert gzip.decompress(rec.body) == (b"m v=%di %d\n" % (n, n)) * 200 and rec.points == 200
        sp.remove(rec)
        n += 1
    assert n >= 20
    sp.close()


def test_v2_client_path_spools_and_replays(own_influxd: Influxd, tmp_path: Path) -> None:
    """The influxdb-client path (through the v2 shim, which answers 503 while influxd is down)."""
    token = tmp_path / "token"
    token.write_text("t0ken")
    shim = V2Shim(own_influxd.url, token="t0ken").start()
    try:
        st = InfluxStore(StoreConfig(kind="influxdb", url=shim.url, api="v2", bucket="pmaintd", org="o",
                                     token_file=token, batch_size=10), tmp_path / "state")
        st.write(pts(0, 10))
        own_influxd.kill()
        st.write(pts(10, 20))
        assert st.spool_pending_points() == 20 and st.points_written == 10
        own_influxd.restart()
        replay_until_empty(st)
        assert st.points_replayed == 20
        assert shim.acknowledged_lines() == [to_line(p).encode() for p in pts(0, 30)]
        assert stored_reads(own_influxd) == list(range(30))
        st.close()
    finally:
        shim.stop()
