"""`pmaintd backtest disk`: one row per input row, and cutting the input's future never changes a score."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from pmaintd.cli import cli
from tests.forecast.conftest import DAILY_2013, HDS


def _run(args: list[str], tmp: Path) -> str:
    res = CliRunner().invoke(cli, ["--state-dir", str(tmp / "state"), *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_backtest_csv_shape_and_alarm_column(disk_bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    msg = _run(["backtest", "disk", "--backblaze", str(HDS), "--backblaze", str(DAILY_2013),
                "--output", str(out), "--model", str(disk_bundle_dir), "--chunk-rows", "7000"], tmp_path)
    assert "rows" in msg
    scores = pl.read_csv(out)
    assert scores.columns == ["date", "serial_number", "probability", "alarm"]
    n_in = sum(pl.read_csv(p, columns=["date"]).height for p in (HDS, DAILY_2013))
    assert scores.height == n_in  # overlapping drive-days of the two files are each scored
    assert scores["probability"].is_between(0, 1).all() and scores["probability"].null_count() == 0
    thr = json.loads((disk_bundle_dir / "bundle.json").read_text())["threshold"]
    assert (scores["alarm"] == (scores["probability"] >= thr - 5e-7).cast(pl.Int64)).mean() > 0.999
    assert scores["alarm"].sum() > 0


def test_cutting_the_future_never_changes_an_earlier_score(disk_bundle_dir: Path, tmp_path: Path) -> None:
    full_csv = pl.read_csv(HDS, infer_schema_length=0)
    cut = "2015-07-01"
    early = tmp_path / "early.csv.gz"
    with gzip.open(early, "wb") as f:
        f.write(full_csv.filter(pl.col("date") < cut).write_csv().encode())
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _run(["backtest", "disk", "--backblaze", str(HDS), "--output", str(a), "--model", str(disk_bundle_dir)], tmp_path)
    _run(["backtest", "disk", "--backblaze", str(early), "--output", str(b), "--model", str(disk_bundle_dir),
          "--chunk-rows", "3000"], tmp_path)
    sa = pl.read_csv(a).filter(pl.col("date") < cut).sort("serial_number", "date")
    sb = pl.read_csv(b).sort("serial_number", "date")
    assert sb.height > 5000
    assert_frame_equal(sa, sb)
