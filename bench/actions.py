"""Action-layer benchmark: what deciding and carrying out actions costs.

1. Policy evaluation: `ActionEngine.evaluate` over a fleet of N forecasts (1% above threshold, observe mode so
   each of those is recorded in the sqlite state machine and audited), as forecasts/s, median of 3 runs on a
   fresh state dir; and the same batch as a dry run (decided in a transaction that is rolled back). Reference in
   the same run: parsing the same forecasts from JSON lines alone (`parse_forecast_lines`).
2. Running one command: median wall time of `true` through the executor locally (`bash -c`), over SSH on the
   executor's reused paramiko connection, and, as the reference, OpenSSH's own `ssh` client opening a new
   connection each time (what a naive `subprocess.run(["ssh", ...])` executor pays). SSH is a real OpenSSH
   server on a loopback port (tests/services.start_sshd): the figures are protocol cost, not network latency.
Usage: .venv/bin/python bench/actions.py [--fleet 10000] [--runs 20]
Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pmaintd import config
from pmaintd.act.engine import ActionEngine
from pmaintd.act.executor import Executor
from pmaintd.act.policy import parse_forecast_lines
from tests.services import start_sshd

POLICY = """
[actions.noop]
run_on = "local"
command = "true {entity}"
[[policies]]
name = "watch"
kind = "disk"
min_probability = 0.5
action = "noop"
mode = "observe"
"""


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_evaluate(fleet: int, tmp: Path) -> None:
    lines = [
        json.dumps({"kind": "disk", "entity": f"SN{i:07d}", "probability": 0.9 if i % 100 == 0 else 0.01,
                    "horizon_hours": 168})
        for i in range(fleet)
    ]
    cfg_path = tmp / "c.toml"
    cfg_path.write_text(POLICY)
    cfg = config.load(cfg_path)
    forecasts = parse_forecast_lines(lines)
    parse_s = _median_time(lambda: parse_forecast_lines(lines), 3)
    real, dry = [], []
    for i in range(3):
        engine = ActionEngine(cfg, tmp / f"state{i}")
        t0 = time.perf_counter()
        engine.evaluate(forecasts, dry_run=True)
        dry.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        decisions = engine.evaluate(forecasts)
        real.append(time.perf_counter() - t0)
        recorded = sum(d.outcome == "observed" for d in decisions)
        engine.close()
    print(f"policy evaluation, fleet of {fleet} forecasts ({recorded} recorded per run):")
    print(f"  parse JSON lines only (reference) {fleet / parse_s:>10,.0f} forecasts/s")
    print(f"  evaluate --dry-run                {fleet / statistics.median(dry):>10,.0f} forecasts/s")
    print(f"  evaluate (records + audit)        {fleet / statistics.median(real):>10,.0f} forecasts/s"
          f"   ({statistics.median(real) / parse_s:.1f}x the parse time)")  # fmt: skip


def bench_exec(runs: int, tmp: Path) -> None:
    (tmp / "sshd").mkdir()
    sshd = start_sshd(tmp / "sshd")
    try:
        host = config.HostEntry(name="h1", transport="ssh", address=sshd.address, user=sshd.user,
                                key_file=sshd.client_key, known_hosts=sshd.known_hosts, collect=[])  # fmt: skip
        ex = Executor([host])
        ex.run("h1", "true", 10)  # connect once
        local = _median_time(lambda: ex.run("local", "true", 10), runs)
        reused = _median_time(lambda: ex.run("h1", "true", 10), runs)
        ex.close()
        ssh_cmd = ["ssh", "-p", str(sshd.port), "-i", str(sshd.client_key), "-o", "BatchMode=yes",
                   "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                   f"{sshd.user}@127.0.0.1", "true"]  # fmt: skip
        openssh = _median_time(lambda: subprocess.run(ssh_cmd, check=True, capture_output=True), runs)
    finally:
        sshd.stop()
    print(f"one command (`true`), median of {runs}:")
    print(f"  local bash -c                     {local * 1000:>8.1f} ms")
    print(f"  SSH, reused paramiko connection   {reused * 1000:>8.1f} ms")
    ratio = openssh / reused
    print(f"  OpenSSH ssh, new connection (ref) {openssh * 1000:>8.1f} ms   ({ratio:.1f}x the reused connection)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fleet", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_evaluate(args.fleet, Path(d))
        bench_exec(args.runs, Path(d))


if __name__ == "__main__":
    main()
