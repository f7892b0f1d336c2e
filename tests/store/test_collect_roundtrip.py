"""`pmaintd collect --once` (the installed console script) into a real influxd, read back through the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pmaintd.config import StoreConfig
from pmaintd.store.influx import InfluxStore
from pmaintd.telemetry import parse_time
from tests.services import Influxd

PMAINTD = Path(sys.executable).parent / "pmaintd"


@pytest.mark.service
def test_collect_once_into_influxdb_reads_back_the_same_values_and_tags(influxd: Influxd, tmp_path: Path) -> None:
    db = f"collect_{time.monotonic_ns()}"
    cfg = tmp_path / "pmaintd.toml"
    cfg.write_text(f'[store]\nkind = "influxdb"\nurl = "{influxd.url}"\napi = "v1"\ndatabase = "{db}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMAINTD_")}
    r = subprocess.run(
        [str(PMAINTD), "--config", str(cfg), "--state-dir", str(tmp_path / "state"), "collect", "--once",
         "--only", "diskio", "--only", "host", "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert {"diskio", "cpu", "mem", "system"} <= {p["measurement"] for p in printed}
    st = InfluxStore(StoreConfig(kind="influxdb", url=influxd.url, database=db), tmp_path / "reader")
    for m in {p["measurement"] for p in printed}:
        mine = [p for p in printed if p["measurement"] == m]
        rows = st.query(m).with_columns(pl.col("time").dt.epoch("us")).to_dicts()
        assert len(rows) == len(mine), m
        for p in mine:
            t_us = parse_time(p["time"]) // 1000
            match = [
                row for row in rows
                if row["time"] == t_us and all(row[k] == v for k, v in p["tags"].items())
            ]
            assert len(match) == 1, (m, p["tags"])
            for k, v in p["fields"].items():
                assert match[0][k] == v and type(match[0][k]) is type(v), (m, k)
    st.close()
