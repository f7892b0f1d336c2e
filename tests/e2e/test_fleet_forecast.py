"""End to end: simulated fleet -> store -> `pmaintd retrain` host and network -> the daemon's forecasts.

The simulator (pmaintd.simulate) writes ten days of a 400-host fleet up to "now" and keeps the failures of
the next day as the truth. Models are trained only on incidents before now; the daemon (`pmaintd run --once`)
then scores every host and link at now. A failure in the next 24 hours is caught when its entity is at the
alarm level; a healthy entity at the alarm level is a false alarm; lead time is how long before the failure
the alarm came. The simulator's precursors are strong by construction: this checks that the whole chain
works, never how accurate pmaintd is on a real fleet.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pmaintd.store.sqlite import SqliteStore
from pmaintd.telemetry import format_time, now_ns, parse_time
from tests.services import free_port

HOUR_NS = 3600 * 10**9


def _pmaintd(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [str(Path(sys.executable).parent / "pmaintd"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-4000:])
    return r


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]], dict[str, dict]]:
    root = tmp_path_factory.mktemp("e2e")
    cfg = root / "pmaintd.toml"
    cfg.write_text(f"""
[collect.host]
enabled = false
[collect.diskio]
enabled = false
[collect.smart]
enabled = false
[forecast]
kinds = ["host", "network"]
min_history = "1d"
false_alarm_budget = 0.1
[incidents]
host_unreachable_after = "3h"
interface_down_after = "2h"
[daemon]
listen = "127.0.0.1:{free_port()}"
""")
    env = os.environ | {"PMAINTD_CONFIG": str(cfg), "PMAINTD_STATE_DIR": str(root / "state")}
    # The simulated fleet's now is the real now: the daemon scores at the real time, and the newest samples
    # must still be fresh when it does.
    now = format_time(now_ns())
    (root / "now").write_text(now)
    truth = root / "truth.jsonl"
    _pmaintd(
        env,
        "simulate",
        "--hosts",
        "400",
        "--disks-per-host",
        "1",
        "--days",
        "10",
        "--future",
        "1d",
        "--step",
        "1h",
        "--seed",
        "3",
        "--end",
        now,
        "--truth",
        str(truth),
    )
    retrain = {k: json.loads(_pmaintd(env, "retrain", "--kind", k, "--json").stdout) for k in ("host", "network")}
    _pmaintd(env, "run", "--once")
    return root, [json.loads(line) for line in truth.read_text().splitlines()], retrain


@pytest.mark.parametrize("kind", ["host", "network"])
def test_daemon_forecasts_alarm_ahead_of_failures(fleet: tuple[Path, list[dict[str, str]], dict], kind: str) -> None:
    root, truth, retrain = fleet
    assert retrain[kind]["promoted"], retrain[kind]["reason"]
    now = parse_time((root / "now").read_text())
    store = SqliteStore(root / "state" / "pmaintd.db")
    fc = store.query("pmaintd_forecast", tags={"kind": kind})
    anomalies = store.query("pmaintd_anomaly", tags={"kind": kind})
    store.close()
    assert fc.height > 0
    latest = fc.group_by("entity").agg(pl.all().sort_by("time").last())
    failed_before = {t["entity"] for t in truth if t["kind"] == kind and parse_time(t["time"]) <= now}
    upcoming = {
        t["entity"]: parse_time(t["time"])
        for t in truth
        if t["kind"] == kind and now < parse_time(t["time"]) <= now + 24 * HOUR_NS
    }
    alive = latest.filter(~pl.col("entity").is_in(list(failed_before)))
    # The daemon also wrote each reporting entity's unsupervised anomaly score.
    assert set(alive["entity"]) <= set(anomalies["entity"])
    alarms = set(alive.filter(pl.col("level") == "alarm")["entity"])
    healthy = set(alive["entity"]) - set(upcoming)
    caught = [e for e in upcoming if e in alarms]
    recall = len(caught) / len(upcoming)
    far = len(alarms & healthy) / len(healthy)
    lead = statistics.median((upcoming[e] - now) / HOUR_NS for e in caught)
    print(
        f"{kind}: {len(upcoming)} failures in the next 24 h, caught {len(caught)} (recall {recall:.2f}), "
        f"false alarms {len(alarms & healthy)}/{len(healthy)} (FAR {far:.3f}), median lead {lead:.1f} h"
    )
    assert len(upcoming) >= 8
    assert recall >= 0.6
    assert far <= 0.05
    assert lead >= 4


def test_forecast_command_ranks_with_reasons_and_anomaly(fleet: tuple[Path, list[dict[str, str]], dict]) -> None:
    """`pmaintd forecast` shows the same risks with their reasons and each entity's unsupervised anomaly score."""
    root, truth, _ = fleet
    env = os.environ | {"PMAINTD_CONFIG": str(root / "pmaintd.toml"), "PMAINTD_STATE_DIR": str(root / "state")}
    rows = json.loads(_pmaintd(env, "forecast", "--kind", "host", "--top", "1000", "--json").stdout)
    now = parse_time((root / "now").read_text())
    upcoming = {t["entity"] for t in truth if t["kind"] == "host" and now < parse_time(t["time"]) <= now + 24 * HOUR_NS}
    alarms = [r for r in rows if r["level"] == "alarm"]
    assert upcoming <= {r["entity"] for r in alarms}
    assert all(r["reasons"] and r["reasons"][0]["feature"] for r in alarms)
    failed = {t["entity"] for t in truth if t["kind"] == "host" and parse_time(t["time"]) <= now}
    alive = [r for r in rows if r["entity"] not in failed]
    assert alive and all(r["anomaly"] is not None and r["anomaly"] >= 0 for r in alive)
    assert all(r["recurring_actions"] == 0 for r in rows)
