"""Whole start-stop histories: daily rows rebuilt exactly as the daily histories were, and healthy windows
sampled from them (forecast.histories), on real Backblaze drives."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pmaintd.forecast import backblaze
from pmaintd.forecast.backblaze import BackblazeFormatError
from pmaintd.forecast.disk import healthy_history_rows
from pmaintd.forecast.features import DISK_SPEC
from pmaintd.forecast.histories import healthy_windows, read_startstop
from pmaintd.forecast.train import TrainOptions, entity_parts, extra_negative_rows
from tests.forecast.conftest import HDS, HISTORIES

COLS = ["smart_9_raw", "smart_5_raw", "smart_12_raw", "smart_187_raw", "smart_188_raw", "smart_197_raw",
        "smart_198_raw"]


@pytest.fixture(scope="module")
def windows() -> pl.DataFrame:
    return healthy_windows(read_startstop(HISTORIES), per_drive=3, days=37)


def test_windows_reproduce_the_daily_histories_row_for_row(windows: pl.DataFrame) -> None:
    """Where a window overlaps a drive's last 120 days in the daily file, every value is the daily file's."""
    daily = backblaze.read_backblaze([HDS]).select("serial_number", "date", *COLS)
    w = windows.with_columns(pl.col("serial_number").str.split("#").list.first())
    both = w.join(daily, on=["serial_number", "date"], how="inner", suffix="_daily")
    assert both.height > 500
    for c in COLS:
        same = both.select((pl.col(c).eq_missing(pl.col(f"{c}_daily"))).all()).item()
        assert same, c


def test_windows_are_whole_healthy_and_stable(windows: pl.DataFrame) -> None:
    intervals = read_startstop(HISTORIES)
    failed = intervals.filter(pl.col("n_fails") > 0)["serial_number"].unique()
    base = windows["serial_number"].str.split("#").list.first()
    assert not base.is_in(failed.implode()).any()
    per = windows.group_by("serial_number").agg(pl.len(), (pl.col("date").max() - pl.col("date").min()).dt.total_days())
    assert set(per["len"]) == {37} and set(per["date"]) == {36}
    assert windows["failure"].sum() == 0
    assert healthy_windows(intervals, per_drive=3, days=37).equals(windows)


def test_training_uses_only_windows_of_train_drives(windows: pl.DataFrame) -> None:
    opts = TrainOptions(negative_rate=1.0)
    rows = healthy_history_rows([HISTORIES], 168)
    assert rows.group_by(DISK_SPEC.entity).len()["len"].max() == 7 and rows["label"].sum() == 0
    kept = extra_negative_rows(rows, DISK_SPEC, opts)
    base = kept[DISK_SPEC.entity].str.split("#").list.first().unique()
    assert base.len() > 0 and set(entity_parts(base, opts.fractions, opts.seed)) == {"train"}
    everything = rows[DISK_SPEC.entity].str.split("#").list.first().unique()
    assert base.len() < everything.len()


def test_not_a_startstop_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackblazeFormatError, match="not a start-stop history file, no column"):
        read_startstop(HDS)
