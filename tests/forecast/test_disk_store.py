"""Backblaze import into the real sqlite store, live forecasts from it, and retraining with promotion."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from pmaintd.cli import cli
from pmaintd.config import ForecastConfig
from pmaintd.forecast import backblaze
from pmaintd.forecast.bundle import Bundle, Registry
from pmaintd.forecast.retrain import compare, retrain
from pmaintd.forecast.scoring import INSUFFICIENT, disk_frame, run_forecasts
from pmaintd.forecast.sources import labeled_for_retrain
from pmaintd.store.sqlite import SqliteStore
from pmaintd.telemetry import FORECAST, INCIDENT, SMART_ATTRIBUTE, SMART_DEVICE
from tests.forecast.conftest import DAILY_2013, HDS, SMALL


def _cli(tmp: Path, *args: str) -> str:
    res = CliRunner().invoke(cli, ["--state-dir", str(tmp / "state"), *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _shifted(src: Path, dst: Path, end: date, drives: int | None = None) -> pl.DataFrame:
    """The sample with dates moved so its last day is `end` (live scoring reads only recent history)."""
    df = pl.read_csv(src, infer_schema_length=0).with_columns(pl.col("date").str.to_date())
    if drives:
        keep = df["serial_number"].unique().sort()[:drives]
        df = df.filter(pl.col("serial_number").is_in(keep.implode()))
    df = df.with_columns(pl.col("date") + (end - df["date"].max()))
    with gzip.open(dst, "wb") as f:
        f.write(df.with_columns(pl.col("date").cast(pl.Utf8)).write_csv().encode())
    return df


def test_import_round_trip_into_sqlite(tmp_path: Path) -> None:
    out = json.loads(_cli(tmp_path, "import", "backblaze", str(DAILY_2013), "--json"))
    src = backblaze.read_backblaze([DAILY_2013])
    assert out["rows"] == src.height and out["failures"] == 15
    st = SqliteStore(tmp_path / "state" / "pmaintd.db")
    try:
        dev = st.query(SMART_DEVICE)
        assert dev.height == src.height
        assert {"reallocated_sectors_count", "pending_sector_count", "power_on_hours", "temp_c"} <= set(dev.columns)
        attrs = st.query(SMART_ATTRIBUTE, tags={"id": "197"})
        assert set(attrs["name"].unique()) == {"Current_Pending_Sector"}
        inc = st.query(INCIDENT, tags={"kind": "disk"})
        assert sorted(inc["entity"].to_list()) == sorted(src.filter(pl.col("failure") == 1)["serial_number"].to_list())
        back = disk_frame(st, None, None).with_columns(pl.col("date").dt.date())
    finally:
        st.close()
    both = src.join(back, on=["serial_number", "date"], suffix="_store")
    assert both.height == src.height
    for c in ("smart_5_raw", "smart_9_raw", "smart_194_raw", "smart_197_raw", "smart_1_raw"):
        assert (both[c] == both[f"{c}_store"]).all(), c


def test_forecast_ranks_drives_with_reasons_and_flags_short_history(
    disk_bundle: Bundle, disk_bundle_dir: Path, tmp_path: Path
) -> None:
    reg = Registry(tmp_path / "state")
    reg.add(disk_bundle)
    reg.promote("disk", disk_bundle.version)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    src = _shifted(HDS, tmp_path / "recent.csv.gz", yesterday, drives=40)
    _cli(tmp_path, "import", "backblaze", str(tmp_path / "recent.csv.gz"))
    st = SqliteStore(tmp_path / "state" / "pmaintd.db")
    try:
        # One drive seen only once, yesterday: no number for it.
        one = tmp_path / "one.csv"
        one.write_text(f"date,serial_number,model,capacity_bytes,failure,smart_5_raw,smart_9_raw\n"
                       f"{yesterday},NEWDRIVE1,ST4000DM000,4000787030016,0,0,12\n")
        _cli(tmp_path, "import", "backblaze", str(one))
        now = int(datetime.now(UTC).timestamp()) * 10**9
        points = run_forecasts(st, reg, ["disk"], now, ForecastConfig())
    finally:
        st.close()
    recent = src.filter(pl.col("date") > yesterday - timedelta(days=35))["serial_number"].n_unique()
    assert len(points) == recent + 1
    assert all(p.measurement == FORECAST and p.tags["kind"] == "disk" and p.tags["host"] == "backblaze"
               for p in points)
    new = next(p for p in points if p.tags["entity"] == "NEWDRIVE1")
    assert new.fields["level"] == INSUFFICIENT and "probability" not in new.fields
    scored = [p for p in points if "probability" in p.fields]
    assert all(len(json.loads(p.fields["reasons"])) > 0 for p in scored)
    # The CLI prints the same ranking, from the model promoted in its state dir.
    rows = json.loads(_cli(tmp_path, "forecast", "--kind", "disk", "--json", "--top", "100"))
    assert len(rows) == len(points)
    probs = [r["probability"] for r in rows if r["probability"] is not None]
    assert probs == sorted(probs, reverse=True) and rows[-1]["level"] == INSUFFICIENT
    assert rows[0]["reasons"][0]["feature"] in json.loads((disk_bundle_dir / "bundle.json").read_text())["features"]


def test_compare_promotes_only_when_not_worse() -> None:
    good = {"recall_at_far_0.01": 0.6, "far_at_threshold": 0.008}
    assert compare(good, None, 0.01)[0]
    assert compare(good, {"recall_at_far_0.01": 0.6}, 0.01)[0]
    assert not compare(good, {"recall_at_far_0.01": 0.7}, 0.01)[0]
    assert not compare({"recall_at_far_0.01": 0.9, "far_at_threshold": 0.02, "entities_healthy": 1000}, None, 0.01)[0]
    # One entity of slack: 1 false alarm among 70 healthy drives (1.4%) does not fail a 1% budget.
    assert compare({"recall_at_far_0.01": 0.9, "far_at_threshold": 1 / 70, "entities_healthy": 70}, None, 0.01)[0]
    assert not compare({"recall_at_far_0.01": 0.9, "far_at_threshold": 2 / 70, "entities_healthy": 70}, None, 0.01)[0]
    assert not compare({"recall_at_far_0.01": None, "far_at_threshold": None}, None, 0.01)[0]


WINDOW = 700 * 86400
"""The sample's failures spread over 2013-2016: a long recent window holds enough of them to compare on."""


def test_retrain_promotes_a_first_model_then_refuses_a_worse_one(disk_bundle: Bundle, tmp_path: Path) -> None:
    labeled, spec, _h = labeled_for_retrain("disk", None, [], [HDS], 168)
    reg = Registry(tmp_path / "state", shipped_root=tmp_path / "none")
    opts = replace(SMALL, far_budget=0.05)  # ~100 healthy drives in the window: let a few alarm
    first = retrain("disk", labeled, spec, reg, opts, WINDOW, 0)
    assert first.promoted, first.reason
    assert reg.current_version("disk") == first.challenger_version
    assert first.challenger["recall_at_far_0.05"] > 0
    # A challenger that may not split (every leaf needs more rows than exist) scores every drive alike.
    weak = retrain("disk", labeled, spec, reg, replace(opts, min_data_in_leaf=10**7), WINDOW, 0)
    assert not weak.promoted, weak.reason
    assert weak.champion["version"] == first.challenger_version
    assert reg.current_version("disk") == first.challenger_version
    assert set(reg.versions("disk")) == {first.challenger_version, weak.challenger_version}


@pytest.mark.parametrize("bad", ["time,kind,entity\n2016-01-01,disk,A\nnot-a-time,disk,B\n"])
def test_retrain_cli_reports_bad_incident_lines(tmp_path: Path, bad: str) -> None:
    f = tmp_path / "inc.csv"
    f.write_text(bad)
    res = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "s"), "retrain", "--kind", "disk",
                                   "--incidents", str(f), "--backblaze", str(HDS)])
    assert res.exit_code == 2 and "line 3" in res.output
