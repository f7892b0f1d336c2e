"""The disk kind end to end from Backblaze files: labeled features, the shipped model's training, baselines.

`pmaintd train disk --backblaze FILE ... --output models/disk` calls `train_from_backblaze`; it is what
produced the shipped bundle (see models/disk/MODEL_CARD.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pmaintd.forecast import backblaze
from pmaintd.forecast.bundle import Bundle
from pmaintd.forecast.evaluate import backblaze_rule_score, evaluate
from pmaintd.forecast.features import DISK_CRITICAL, DISK_SPEC, build_features
from pmaintd.forecast.labels import label_rows
from pmaintd.forecast.train import TrainOptions, assign_parts, file_hash, fit, plain_baseline


def labeled_from_frame(raw: pl.DataFrame, horizon_hours: float) -> pl.DataFrame:
    """Features + labels for a Backblaze-shaped frame (failure=1 on a drive's failure day)."""
    feats = build_features(raw, DISK_SPEC)
    rules = raw.select(
        "serial_number",
        pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        backblaze_rule_score(raw).alias("rule_score"),
    ).unique(subset=["serial_number", "date"], keep="last")
    feats = feats.join(rules, on=["serial_number", "date"], how="left")
    return label_rows(feats, backblaze.failures(raw), horizon_hours, DISK_SPEC.entity, DISK_SPEC.time)


def train_from_backblaze(
    paths: Sequence[Path],
    output: Path | None,
    opts: TrainOptions,
    baselines: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[Bundle, dict[str, Any]]:
    """Train the disk model on Backblaze files; save it to `output` (if given) with its metrics and the
    two reference baselines evaluated on the same unseen test drives."""
    raw = backblaze.read_backblaze(paths)
    log(f"read {raw.height} rows, {raw['serial_number'].n_unique()} drives")
    labeled = labeled_from_frame(raw, opts.horizon_hours)
    del raw
    bundle, _test = fit(labeled, DISK_SPEC, opts, data_hash=file_hash(paths), log=log)
    report: dict[str, Any] = {"model": bundle.metrics["test"]}
    if baselines:
        ent, tm = DISK_SPEC.entity, DISK_SPEC.time
        test = assign_parts(labeled, ent, opts).filter(pl.col("part") == "test")
        rule = test.select(ent, tm, "failure_time", pl.col("rule_score").fill_null(0).alias("score"))
        report["backblaze_rule"] = evaluate(rule, ent, tm, opts.horizon_hours, threshold=0.5)
        report["plain_lightgbm"] = plain_baseline(labeled, DISK_SPEC, opts, (*DISK_CRITICAL, "smart_9_raw"))
        bundle.metrics["baselines"] = {k: v for k, v in report.items() if k != "model"}
    bundle.training_window["files"] = ", ".join(Path(p).name for p in paths)
    if output is not None:
        bundle.save(output)
    return bundle, report


def train_job(paths: Sequence[Path], output: Path, opts: TrainOptions) -> str:
    """Picklable entry for `train.train_in_subprocess`: train, save to `output`, return the version."""
    bundle, _ = train_from_backblaze(paths, output, opts, baselines=False, log=lambda _m: None)
    return bundle.version
