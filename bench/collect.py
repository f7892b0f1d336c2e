"""Collector benchmark: what one steady-state poll of `diskio` and `host` costs, locally and over SSH.

For each collector and transport it prints the median wall time of a poll (after a warm-up poll, so the
host collector compares with its previous reading instead of sampling twice), the points it returns and
the number of transport calls (file reads, directory listings, commands: over SSH each is one exec on the
shared connection). The reference, measured in the same run, is psutil reading the same facts locally
(disk_io_counters(perdisk) for diskio; cpu_times(percpu), virtual_memory, swap_memory, getloadavg,
boot_time and users for host), which cannot reach a remote host at all. A last pair of rows counts the
calls a steady poll needs on the tests' recorded server tree (2 memory controllers, 3 hwmon chips, 14 block
devices) when the transport cannot batch (runs no commands), to show what batching saves.
SSH is a real OpenSSH server started here on a loopback port (tests/services.start_sshd), so "remote" is
this machine's own /proc and /sys read through sshd: the figure is the protocol's cost, not the network's.
Usage: .venv/bin/python bench/collect.py [--polls 30]
Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pmaintd import collect
from pmaintd.collect import Target
from pmaintd.collect.hosts import close_transports
from pmaintd.config import validate
from tests.collect.filetree import Counting, FileTreeTransport
from tests.services import start_sshd


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def psutil_host() -> None:
    psutil.cpu_times(percpu=True)
    psutil.cpu_times()
    psutil.virtual_memory()
    psutil.swap_memory()
    psutil.getloadavg()
    psutil.boot_time()
    psutil.users()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polls", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sshd = start_sshd(Path(tmp))
        try:
            cfg = validate(
                {
                    "hosts": [
                        {"name": "local", "transport": "local", "collect": ["diskio", "host"]},
                        {
                            "name": "ssh-loopback",
                            "address": sshd.address,
                            "user": sshd.user,
                            "key_file": str(sshd.client_key),
                            "known_hosts": str(sshd.known_hosts),
                        },
                    ]
                }
            )
            rows = []
            for c in collect.build(cfg, only=["diskio", "host"]):
                for t in c.targets():
                    assert t.transport is not None
                    counted = Counting(t.transport)
                    ct = Target(t.name, t.interval, t.timeout, counted)
                    c.collect(ct)  # warm-up: connection, first CPU sample, identity cache
                    counted.calls = 0
                    points = len(c.collect(ct))
                    calls = counted.calls
                    ms = median_ms(lambda c=c, ct=ct: c.collect(ct), args.polls)
                    rows.append((c.name, t.name, ms, points, calls))
            # Transport calls a poll needs on a server with EDAC and hwmon (the recorded tree of the tests):
            # over SSH, each is one remote command.
            tree = Path(__file__).resolve().parent.parent / "tests/collect/testdata"
            for c in collect.build(validate({}), only=["diskio", "host"]):
                counted = Counting(FileTreeTransport("server", tree / "server", commands=False))
                ct = Target("server", 60, 30, counted)
                c.collect(ct)
                counted.calls = 0
                points = len(c.collect(ct))
                rows.append((c.name, "server tree", float("nan"), points, counted.calls))
            ref = {
                "diskio": median_ms(lambda: psutil.disk_io_counters(perdisk=True), args.polls),
                "host": median_ms(psutil_host, args.polls),
            }
        finally:
            close_transports()
            sshd.stop()
    print(f"median of {args.polls} steady-state polls per row")
    print(f"{'collector':<10}{'transport':<15}{'ms/poll':>10}{'points':>8}{'calls':>7}{'vs psutil local':>17}")
    for name, target, ms, points, calls in rows:
        ratio = f"{ms / ref[name]:>16.1f}x" if ms == ms else f"{'-':>17}"
        print(f"{name:<10}{target:<15}{ms:>10.2f}{points:>8}{calls:>7}{ratio}")
    for name, ms in ref.items():
        print(f"{name:<10}{'psutil (ref)':<15}{ms:>10.2f}")


if __name__ == "__main__":
    main()
