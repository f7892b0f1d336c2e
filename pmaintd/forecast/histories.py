"""Whole drive histories in start-stop form, and healthy windows sampled from them across the whole time range.

Why this exists: the daily Backblaze histories (`backblaze_hds_daily_last120`) keep each drive's LAST 120 days
only. Failed drives end at their failure, spread over 2013-2016; healthy drives nearly all end in 2016-07..09.
A model trained on them learns when a record ends instead of how a disk behaves: within a disk model, age
tells the calendar date, and "younger than its cohort" tells "failed in 2014". Trained on rows before 2016 only
and scored on 2016 (unseen drives), such a model catches 0.18 of failures at 1% false alarms (5 folds). Healthy
windows drawn from whole histories at random points of each drive's life put healthy drives at every age and
date, so that shortcut no longer separates the classes (the same test: 0.46; models/disk/MODEL_CARD.md).

The start-stop file (`boennecd/dynamichazard`'s `hds`) has one row per interval `[tstart, tstop)` of power-on
hours in which the SMART values were constant, and per drive its first/last date and hours. Daily rows are
rebuilt the way the daily histories were: day k after `min_date` is at hour
`floor(min_hours + k * (max_hours - min_hours) / days)` and takes the interval holding that hour, with an
attribute a drive did not report yet (Backblaze added columns over the years) back-filled from its first
reported value, as the daily histories have it (checked value for value: tests/forecast/test_histories.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from pmaintd.forecast.backblaze import BackblazeFormatError

ATTRS = (5, 10, 12, 187, 188, 189, 196, 197, 198)
REQUIRED = ("serial_number", "model", "n_fails", "min_date", "max_date", "min_hours", "max_hours", "tstart", "tstop")


def read_startstop(path: Path) -> pl.DataFrame:
    """The start-stop intervals (plain or gzip CSV) with dates parsed and SMART values as float."""
    try:
        header = pl.read_csv(path, n_rows=0).columns
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as exc:
        raise BackblazeFormatError(f"{path}: cannot read as CSV: {exc}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise BackblazeFormatError(f"{path}: not a start-stop history file, no column(s) {', '.join(missing)}")
    attrs = [f"smart_{n}" for n in ATTRS if f"smart_{n}" in header]
    df = pl.read_csv(
        path,
        columns=[*REQUIRED, *attrs],
        schema_overrides={"serial_number": pl.Utf8, "model": pl.Utf8} | {a: pl.Float64 for a in attrs},
    )
    return df.with_columns(pl.col("min_date").str.to_date(), pl.col("max_date").str.to_date())


def _unit(key: str) -> float:
    """A stable uniform number in [0, 1) from a string (same on every run and machine)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64


def healthy_windows(intervals: pl.DataFrame, per_drive: int = 2, days: int = 37, seed: int = 0) -> pl.DataFrame:
    """Backblaze-shaped daily rows of `per_drive` windows of `days` days from each never-failed drive.

    Each window ends at a stable pseudo-random day of the drive's record and is its own entity,
    `<serial>#<k>`, so windows never run into each other. A window's first days only warm up the windowed
    features: keep its last days for training (the per-drive evaluation looks at a healthy drive's last 7).
    """
    drives = (
        intervals.filter(pl.col("n_fails") == 0)
        .group_by("serial_number")
        .agg(pl.col("model", "min_date", "max_date", "min_hours", "max_hours").first())
        .with_columns((pl.col("max_date") - pl.col("min_date")).dt.total_days().alias("span"))
        .filter(pl.col("span") >= days)
        .sort("serial_number")
    )
    ends = [
        (sn, k, days - 1 + int(_unit(f"{seed}:{k}:{sn}") * (span - days + 2)))
        for sn, span in zip(drives["serial_number"], drives["span"], strict=True)
        for k in range(per_drive)
    ]
    win = pl.DataFrame(ends, schema={"serial_number": pl.Utf8, "k": pl.Int32, "end": pl.Int64}, orient="row")
    rows = (
        win.join(drives, on="serial_number")
        .with_columns(pl.int_ranges(pl.col("end") - days + 1, pl.col("end") + 1).alias("day"))
        .explode("day")
        .with_columns(
            (pl.col("min_hours") + (pl.col("day") * (pl.col("max_hours") - pl.col("min_hours")) / pl.col("span"))
             .floor()).cast(pl.Int64).alias("hours"),
            (pl.col("min_date") + pl.duration(days=pl.col("day"))).alias("date"),
        )
        .sort("serial_number", "hours")
    )
    attrs = [c for c in intervals.columns if c.startswith("smart_")]
    iv = (
        intervals.select("serial_number", "tstart", *attrs)
        .sort("serial_number", "tstart")
        .with_columns(pl.col(a).backward_fill().over("serial_number") for a in attrs)
    )
    joined = rows.join_asof(iv, left_on="hours", right_on="tstart", by="serial_number", check_sortedness=False)
    return joined.select(
        (pl.col("serial_number") + "#" + pl.col("k").cast(pl.Utf8)).alias("serial_number"),
        "date",
        "model",
        pl.lit(0, pl.Int8).alias("failure"),
        pl.col("hours").cast(pl.Float64).alias("smart_9_raw"),
        *[pl.col(a).alias(f"{a}_raw") for a in attrs],
    ).sort("serial_number", "date")
