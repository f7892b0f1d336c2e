"""Backtest: score every drive-day of Backblaze files using only rows up to that day.

Memory stays bounded by processing drives in chunks: a drive's features depend only on its own history, except
the peer statistics, which use the same day's rows of every drive of the same model. Those are computed once in
a first pass (one small row per model and day) and joined into each chunk, so a chunk's scores equal those of
scoring the whole input at once. Peak memory is the raw input's columns plus one chunk's features.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pmaintd.forecast import backblaze
from pmaintd.forecast.bundle import Bundle
from pmaintd.forecast.features import DISK_SPEC, build_features, entity_chunks, peer_stats, resample


@dataclass(frozen=True)
class BacktestResult:
    rows: int
    drives: int
    alarms: int
    seconds: float


def score_frame(
    raw: pl.DataFrame,
    bundle: Bundle,
    chunk_rows: int = 250_000,
    log: Callable[[str], None] = lambda _m: None,
) -> pl.DataFrame:
    """serial_number, date, probability for each (drive, day) of a Backblaze-shaped frame sorted by drive."""
    spec = DISK_SPEC
    peers = peer_stats(resample(raw, spec), spec) if spec.peer else None
    bounds = entity_chunks(raw["serial_number"], chunk_rows)
    parts: list[pl.DataFrame] = []
    for i, (lo, hi) in enumerate(bounds):
        feats = build_features(raw.slice(lo, hi - lo), spec, peers=peers)
        prob = bundle.predict(feats)
        parts.append(feats.select(spec.entity, spec.time).with_columns(pl.Series("probability", prob)))
        log(f"chunk {i + 1}/{len(bounds)}: rows {lo}..{hi}")
    out = pl.concat(parts) if parts else pl.DataFrame(
        schema={spec.entity: pl.Utf8, spec.time: pl.Datetime("us", "UTC"), "probability": pl.Float64}
    )
    return out.with_columns(pl.col(spec.time).dt.date())


def backtest(
    paths: Sequence[Path],
    bundle: Bundle,
    output: Path,
    chunk_rows: int = 250_000,
    log: Callable[[str], None] = lambda _m: None,
) -> BacktestResult:
    """Write `date,serial_number,probability,alarm` with one row per input row, in input order."""
    t0 = time.perf_counter()
    frames = [backblaze.read_file(Path(p)) for p in paths]
    keys = pl.concat([f.select("date", "serial_number") for f in frames])
    raw = backblaze.merge(frames)
    del frames
    log(f"read {keys.height} rows, {raw['serial_number'].n_unique()} drives")
    scores = score_frame(raw, bundle, chunk_rows, log)
    drives = raw["serial_number"].n_unique()
    del raw
    out = keys.join(scores, on=["serial_number", "date"], how="left", maintain_order="left").select(
        pl.col("date").dt.strftime("%Y-%m-%d"),
        "serial_number",
        pl.col("probability").round(6),
        (pl.col("probability") >= bundle.threshold).cast(pl.Int8).alias("alarm"),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    out.write_csv(output)
    return BacktestResult(out.height, drives, int(out["alarm"].sum()), time.perf_counter() - t0)
