"""`Store.stats()` latency (what `pmaintd status` waits for) on a store holding years of data.

Writes a Telegraf-like history spread over `--years` into a real influxd 1.x (started here on a loopback port,
tests/services.start_influxd) and into the sqlite store, then times, median of `--runs`:
  old  the former stats(): COUNT(*) ... GROUP BY * and ORDER BY time DESC LIMIT 1 over all time per measurement
       (InfluxDB), COUNT(*)/MAX(time) over the whole points table (sqlite)
  new  Store.stats(): points of the last 24 h and the newest point from time-bounded reads only
The history: cpu and mem from every host over the whole range up to now, diskio until 200 days ago (a
measurement gone quiet: its newest point is found by the backward search), smart_device for the last 7 days.
Both answers are printed (old total vs new 24 h count, and whether the newest times agree).
Usage: .venv/bin/python bench/status.py [--points 3000000] [--years 3] [--runs 3]
Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pmaintd.config import StoreConfig  # noqa: E402
from pmaintd.store import MeasurementStats  # noqa: E402
from pmaintd.store.influx import InfluxStore, quote_ident  # noqa: E402
from pmaintd.store.sqlite import SqliteStore  # noqa: E402
from pmaintd.telemetry import Point  # noqa: E402


class Total(NamedTuple):
    """What the former stats() answered: points over all time."""

    measurement: str
    points: int
    newest: int


S = 10**9
DAY = 86400 * S
CHUNK = 5000

# measurement, share of the points, series, (start, end) as days before now (None: the whole range)
PLAN = [
    ("cpu", 0.40, 40, None),
    ("mem", 0.25, 40, None),
    ("diskio", 0.30, 80, (None, 200)),
    ("smart_device", 0.05, 200, (7, 0)),
]


def history(points: int, years: float, now: int) -> Iterator[list[Point]]:
    """The planned points, oldest first per measurement, in write-sized lists."""
    batch: list[Point] = []
    span_days = years * 365
    for name, share, series, rng in PLAN:
        first_day, last_day = (span_days, 0) if rng is None else (rng[0] or span_days, rng[1])
        start, end = now - int(first_day * DAY), now - int(last_day * DAY)
        per_series = max(1, int(points * share) // series)
        step = (end - start) // per_series
        for k in range(per_series):
            t = start + k * step + step // 2
            for i in range(series):
                batch.append(Point(name, {"host": f"h{i % 40:02d}", "id": str(i)}, {"value": float(k), "n": i}, t))
                if len(batch) == CHUNK:
                    yield batch
                    batch = []
    if batch:
        yield batch


def old_influx(st: InfluxStore) -> list[Total]:
    """The former InfluxStore.stats(): unbounded COUNT and newest-point queries per measurement."""
    out = []
    for s in st._influxql_series("SHOW MEASUREMENTS"):
        for (name,) in s.get("values", []):
            m = quote_ident(name)
            count = 0
            for cs in st._influxql_series(f"SELECT COUNT(*) FROM {m} GROUP BY *"):
                for row in cs.get("values", []):
                    count += max((v for v in row[1:] if isinstance(v, int)), default=0)
            newest = 0
            for ls in st._influxql_series(f"SELECT * FROM {m} ORDER BY time DESC LIMIT 1"):
                for row in ls.get("values", []):
                    newest = max(newest, row[0])
            out.append(Total(name, count, newest))
    return sorted(out, key=lambda x: x.measurement)


def old_sqlite(st: SqliteStore) -> list[Total]:
    """The former SqliteStore.stats(): one COUNT/MAX over the whole points table."""
    rows = st._db.execute(
        "SELECT s.measurement, COUNT(*), MAX(p.time) FROM points p JOIN series s ON s.id = p.series "
        "GROUP BY s.measurement ORDER BY s.measurement"
    ).fetchall()
    return [Total(m, n, newest) for m, n, newest in rows]


def timed(fn: Callable[[], list[Any]], runs: int) -> tuple[float, list[Any]]:
    times: list[float] = []
    result: list[Any] = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def report(store: str, runs: int, old: Callable[[], list[Total]],
           new: Callable[[], list[MeasurementStats]]) -> None:
    old_s, old_r = timed(old, runs)
    new_s, new_r = timed(new, runs)
    agree = [o.newest == n.newest for o, n in zip(old_r, new_r, strict=True)]
    print(f"{store:<9} old {old_s * 1000:>9.1f} ms   new {new_s * 1000:>7.1f} ms   {old_s / new_s:>6.0f}x faster   "
          f"newest times agree: {all(agree)}", flush=True)
    for o, n in zip(old_r, new_r, strict=True):
        print(f"          {o.measurement:<13} all time {o.points:>10,}   last 24 h {n.points_24h:>8,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=3_000_000)
    ap.add_argument("--years", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from tests.services import start_influxd

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below (stop influxd)
    now = time.time_ns()
    retention = f"{int(args.years * 365) + 30}d"
    print(f"{args.points:,} points over {args.years:g} years, median of {args.runs} runs; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    with tempfile.TemporaryDirectory(prefix="pmaintd-bench-status-") as tmp:
        workdir = Path(tmp)
        (workdir / "influxd").mkdir()
        srv = start_influxd(workdir / "influxd")
        influx = InfluxStore(StoreConfig(kind="influxdb", url=srv.url, database="bench", retention=retention,
                                         batch_size=CHUNK), workdir / "state")
        lite = SqliteStore(workdir / "pmaintd.db", retention_s=(args.years * 365 + 30) * 86400.0)
        try:
            t = time.perf_counter()
            for batch in history(args.points, args.years, now):
                influx.write(batch)
                lite.write(batch)
            print(f"written to both in {time.perf_counter() - t:.0f} s "
                  f"(influx: {influx.points_written:,} accepted, {influx.points_rejected:,} rejected)\n")
            report("influxdb", args.runs, lambda: old_influx(influx), influx.stats)
            report("sqlite", args.runs, lambda: old_sqlite(lite), lite.stats)
        finally:
            influx.close()
            lite.close()
            srv.stop()


if __name__ == "__main__":
    main()
