"""Store benchmark: points/s for line-protocol serialization, sqlite writes and InfluxDB 1.x writes.

Each figure is the median of several runs, printed beside a naive reference measured in the same run:
  serialize  pmaintd's Serializer          vs influxdb-client's Point.to_line_protocol (client Points
                                              built beforehand, so only its serialization is timed)
  sqlite     SqliteStore.write (5000/batch) vs one INSERT per sample through execute() into a plain
                                              rowid table with an index, one transaction per 5000 points
  influxdb   InfluxStore.write (v1, gzip)   vs the same batches serialized by influxdb-client, posted
                                              uncompressed with urllib
Points are diskio-shaped (2 tags, 5 fields: 4 integers and a float, 1,000 series). Every run is a fresh
subprocess (so its peak RSS is its own) writing into a fresh database; point generation is not timed.
InfluxDB is a real influxd 1.x started here on a loopback port (tests/services.start_influxd).
Usage: .venv/bin/python bench/store.py [--points 1000000] [--ref-points 200000] [--runs 3]
Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pmaintd.telemetry import Point  # noqa: E402

CHUNK = 5000
T0 = (time.time_ns() // 10**9 - 86400) * 10**9


def _client_point(p: Point) -> object:
    """The reference: influxdb-client's own Point, built field by field as its documentation shows."""
    from influxdb_client import Point as ClientPoint
    from influxdb_client.domain.write_precision import WritePrecision

    cp = ClientPoint(p.measurement).time(p.time // 1000, WritePrecision.US)
    for k, v in p.tags.items():
        cp.tag(k, v)
    for k, v in p.fields.items():
        cp.field(k, v)
    return cp


def chunks(n: int) -> Iterator[list[Point]]:
    """n diskio points in write-sized lists, generated lazily (memory stays at one chunk)."""
    for start in range(0, n, CHUNK):
        yield [
            Point("diskio", {"host": f"host{i % 100:03d}", "name": f"sd{chr(97 + i // 100 % 10)}"},
                  {"reads": i, "writes": 2 * i, "read_bytes": 512 * i, "io_time": 3 * i, "weighted_io_time": i / 7},
                  T0 + i * 1000)
            for i in range(start, min(start + CHUNK, n))
        ]


def _timed(n: int, fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(points per wall-clock second, points per CPU second of this process) over the write calls only."""
    wall = cpu = 0.0
    for batch in chunks(n):
        t, c = time.perf_counter(), time.process_time()
        fn(batch)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    return n / wall, n / cpu


def phase_serialize(n: int, reference: bool) -> tuple[float, float]:
    if not reference:
        from pmaintd.store.lineproto import Serializer

        ser = Serializer()
        return _timed(n, ser.encode)

    wall = cpu = 0.0
    for batch in chunks(n):
        cps = []
        for p in batch:
            cp = _client_point(p)
            cps.append(cp)
        t, c = time.perf_counter(), time.process_time()
        "\n".join(cp.to_line_protocol() for cp in cps).encode()
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    return n / wall, n / cpu


def phase_sqlite(n: int, reference: bool, workdir: Path) -> tuple[float, float]:
    path = workdir / f"bench-{time.monotonic_ns()}.db"
    if not reference:
        from pmaintd.store.sqlite import SqliteStore

        st = SqliteStore(path)
        rate = _timed(n, st.write)
        st.close()
        return rate
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE samples (measurement TEXT, tags TEXT, field TEXT, time INTEGER, value)")
    db.execute("CREATE INDEX samples_key ON samples (measurement, tags, field, time)")

    def naive(batch: list[Point]) -> None:
        db.execute("BEGIN")
        for p in batch:
            tags = json.dumps(dict(sorted(p.tags.items())))
            for k, v in p.fields.items():
                db.execute("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", (p.measurement, tags, k, p.time, v))
        db.execute("COMMIT")

    rate = _timed(n, naive)
    db.close()
    return rate


def phase_influx(n: int, reference: bool, workdir: Path, url: str) -> tuple[float, float]:
    db = f"bench{time.monotonic_ns()}"
    if not reference:
        from pmaintd.config import StoreConfig
        from pmaintd.store.influx import InfluxStore

        st = InfluxStore(StoreConfig(kind="influxdb", url=url, database=db, batch_size=CHUNK), workdir / db)
        rate = _timed(n, st.write)
        assert st.points_written == n, st.counters()
        st.close()
        return rate

    urllib.request.urlopen(urllib.request.Request(f"{url}/query", data=f"q=CREATE DATABASE {db}".encode())).read()

    def naive(batch: list[Point]) -> None:
        lines = []
        for p in batch:
            cp = _client_point(p)
            lines.append(cp.to_line_protocol())
        req = urllib.request.Request(f"{url}/write?db={db}&precision=u", data="\n".join(lines).encode())
        with urllib.request.urlopen(req) as r:
            assert r.status == 204

    return _timed(n, naive)


def run_phase(args: argparse.Namespace) -> None:
    """Child process: one measurement, printed as JSON with this process's peak RSS."""
    workdir = Path(args.workdir)
    if args.phase == "serialize":
        rate = phase_serialize(args.n, args.reference)
    elif args.phase == "sqlite":
        rate = phase_sqlite(args.n, args.reference, workdir)
    else:
        rate = phase_influx(args.n, args.reference, workdir, args.url)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rate": rate[0], "cpu_rate": rate[1], "rss_mb": rss_mb}))


def measure(
    phase: str, n: int, reference: bool, runs: int, workdir: Path, url: str
) -> tuple[float, float, float]:
    """Median wall rate, median CPU rate, and the largest peak RSS (MB) over `runs` fresh processes."""
    rates, cpu_rates, rss = [], [], []
    for _ in range(runs):
        cmd = [sys.executable, __file__, "--phase", phase, "--n", str(n), "--workdir", str(workdir), "--url", url]
        out = subprocess.run(cmd + (["--reference"] if reference else []), check=True, capture_output=True, text=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rates.append(res["rate"])
        cpu_rates.append(res["cpu_rate"])
        rss.append(res["rss_mb"])
    return statistics.median(rates), statistics.median(cpu_rates), max(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--ref-points", type=int, default=200_000, help="points for the (slow) naive references")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["serialize", "sqlite", "influxdb"], action="append")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        run_phase(args)
        return
    from tests.services import start_influxd

    phases = args.only or ["serialize", "sqlite", "influxdb"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below (stop influxd)
    print(f"{args.points:,} points (references: {args.ref_points:,}), median of {args.runs} runs, "
          "each run a fresh process\n")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall rates suffer under load;")
    print("the CPU rates count this process's CPU seconds only, so for influxdb they leave out the server)\n")
    print(f"{'what':<10} {'pmaintd pts/s':>13} {'naive':>9} {'ratio':>6} {'| per CPU-s':>12} {'naive':>9} "
          f"{'ratio':>6} {'| RSS MB':>9} {'naive':>6}")
    with tempfile.TemporaryDirectory(prefix="pmaintd-bench-") as tmp:
        workdir = Path(tmp)
        srv = None
        try:
            url = ""
            if "influxdb" in phases:
                (workdir / "influxd").mkdir()
                srv = start_influxd(workdir / "influxd")
                url = srv.url
            for phase in phases:
                key = "influx" if phase == "influxdb" else phase
                ours, ours_cpu, ours_rss = measure(key, args.points, False, args.runs, workdir, url)
                ref, ref_cpu, ref_rss = measure(key, args.ref_points, True, args.runs, workdir, url)
                print(f"{phase:<10} {ours:>13,.0f} {ref:>9,.0f} {ours / ref:>5.1f}x | {ours_cpu:>10,.0f} "
                      f"{ref_cpu:>9,.0f} {ours_cpu / ref_cpu:>5.1f}x | {ours_rss:>7.0f} {ref_rss:>6.0f}", flush=True)
        finally:
            if srv is not None:
                srv.stop()


if __name__ == "__main__":
    main()
