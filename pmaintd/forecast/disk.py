"""The disk kind end to end from Backblaze files: labeled features, the shipped model's training, baselines.

`pmaintd train disk --backblaze FILE ... --output models/disk` calls `train_from_backblaze`; it is what
produced the shipped bundle (see models/disk/MODEL_CARD.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pmaintd.forecast import backblaze, histories
from pmaintd.forecast.bundle import Bundle
from pmaintd.forecast.evaluate import BUDGETS, backblaze_rule_score, entity_maxima, evaluate, threshold_for_far
from pmaintd.forecast.features import DISK_CRITICAL, DISK_SPEC, build_features
from pmaintd.forecast.labels import label_rows
from pmaintd.forecast.train import TrainOptions, cross_validate, file_hash, fit, plain_baseline, utc_time

SAME_ERA_FROM = "2016-01-01"
"""Test drives whose record ends from this day on: failed and healthy ones then share a time range, so no
feature can tell them apart by era (the model card reports this subset beside the whole test part)."""


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


def healthy_history_rows(paths: Sequence[Path], horizon_hours: float) -> pl.DataFrame:
    """Feature rows of healthy windows sampled from whole start-stop histories (`forecast.histories`): each
    window's last `horizon` of days, labeled 0, the rows a per-drive evaluation would look at."""
    windows = pl.concat([histories.healthy_windows(histories.read_startstop(Path(p))) for p in paths])
    feats = build_features(windows, DISK_SPEC)
    last = pl.col(DISK_SPEC.time).max().over(DISK_SPEC.entity)
    keep = pl.col(DISK_SPEC.time) > last - pl.duration(microseconds=int(horizon_hours * 3600e6))
    return feats.filter(keep).with_columns(
        pl.lit(0, pl.Int8).alias("label"), pl.lit(None, pl.Datetime("us", "UTC")).alias("failure_time")
    )


def same_era(test_scored: pl.DataFrame, horizon_hours: float, threshold: float) -> dict[str, Any]:
    """`evaluate` on the test drives whose record ends on or after SAME_ERA_FROM."""
    ent, tm = DISK_SPEC.entity, DISK_SPEC.time
    cut = utc_time(SAME_ERA_FROM)
    late = test_scored.group_by(ent).agg(pl.col(tm).max()).filter(pl.col(tm) >= cut)[ent]
    rows = test_scored.filter(pl.col(ent).is_in(late.implode()))
    return {"from": SAME_ERA_FROM, **evaluate(rows, ent, tm, horizon_hours, threshold)}


def retired_drives(frames: Sequence[pl.DataFrame]) -> pl.Series:
    """Drives that left the data before its end without ever failing: a drive whose last row comes before the
    last day of the latest file it is in (`frames` from `backblaze.read_files`, one per file, before they are
    merged and the file a row came from is lost). Backblaze logs a failure only when a drive stops working; a
    drive pulled because its SMART errors grew is not one, yet it is no healthy drive either. Their fate is
    unknown (censored), so `in_service` reports the model without them beside the official figure."""
    per_file = [
        df.group_by("serial_number")
        .agg(pl.col("date").max().alias("last"), (pl.col("failure") == 1).any())
        .with_columns(pl.lit(df["date"].max()).alias("file_end"))
        for df in frames
    ]
    drives = pl.concat(per_file).group_by("serial_number").agg(
        pl.col("last").max(), pl.col("file_end").max(), pl.col("failure").any()
    )
    return drives.filter(~pl.col("failure") & (pl.col("last") < pl.col("file_end")))["serial_number"]


def in_service(test_scored: pl.DataFrame, retired: pl.Series, horizon_hours: float, threshold: float) -> dict[str, Any]:
    """`evaluate` without the healthy test drives that were retired (`retired_drives`), and how many of the
    false alarms at the 1% FAR point those drives made before they were left out."""
    ent, tm = DISK_SPEC.entity, DISK_SPEC.time
    gone = pl.col(ent).is_in(retired.implode())
    healthy = entity_maxima(test_scored, ent, tm, horizon_hours).filter(~pl.col("failed"))
    alarms = healthy.filter(pl.col("max_score") >= threshold_for_far(healthy["max_score"].to_numpy(), BUDGETS[0]))
    rows = test_scored.filter(pl.col("failure_time").is_not_null() | ~gone)
    return {
        "healthy_retired": int(healthy.select(gone.sum()).item()),
        "false_alarms_at_far_0.01": alarms.height,
        "of_them_retired": int(alarms.select(gone.sum()).item()),
        **evaluate(rows, ent, tm, horizon_hours, threshold),
    }


def by_warning(test_scored: pl.DataFrame, horizon_hours: float) -> dict[str, int]:
    """Failed and healthy test drives split by whether a critical counter (SMART 5/187/188/197/198, their sum
    `err_sum`) was above zero at some day of their evaluation window, with the alarms of each group at the 1%
    FAR point. A failure with no warning is one that no model on these counters sees coming, so the warned
    share of failures bounds recall, and the warned healthy drives are the ones the model must rank below them."""
    ent, tm = DISK_SPEC.entity, DISK_SPEC.time
    warned = (pl.col("err_sum__last").fill_null(0).max() > 0).alias("warned")
    per = entity_maxima(test_scored, ent, tm, horizon_hours, extra=[warned])
    t = threshold_for_far(per.filter(~pl.col("failed"))["max_score"].to_numpy(), BUDGETS[0])
    out: dict[str, int] = {}
    for failed, who in ((True, "failed"), (False, "healthy")):
        for flag, how in ((True, "warned"), (False, "silent")):
            group = per.filter((pl.col("failed") == failed) & (pl.col("warned") == flag))
            out[f"{who}_{how}"] = group.height
            out[f"{who}_{how}_alarms_at_far_0.01"] = int((group["max_score"] >= t).sum())
    return out


def rule_baselines(
    labeled: pl.DataFrame, test_scored: pl.DataFrame, retired: pl.Series, horizon_hours: float
) -> dict[str, dict[str, Any]]:
    """Backblaze's rule (`evaluate.backblaze_rule_score`) scored on the same test rows as a model, on all of
    them and in service; it alarms at any non-zero sum, so its own threshold is 0.5."""
    ent, tm = DISK_SPEC.entity, DISK_SPEC.time
    rules = labeled.select(ent, tm, pl.col("rule_score").fill_null(0).alias("score"))
    rows = test_scored.select(ent, tm, "failure_time").join(rules, on=[ent, tm])
    return {
        "backblaze_rule": evaluate(rows, ent, tm, horizon_hours, threshold=0.5),
        "backblaze_rule_in_service": in_service(rows, retired, horizon_hours, 0.5),
    }


def _inputs(
    paths: Sequence[Path], history_paths: Sequence[Path], horizon_hours: float, log: Callable[[str], None]
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.Series]:
    """Labeled feature rows of the Backblaze files, the healthy-window rows of the start-stop files, and the
    retired drives (`retired_drives`)."""
    frames = backblaze.read_files(paths)
    retired = retired_drives(frames)
    raw = backblaze.merge(frames)
    del frames
    log(f"read {raw.height} rows, {raw['serial_number'].n_unique()} drives")
    labeled = labeled_from_frame(raw, horizon_hours)
    del raw
    extra = healthy_history_rows(history_paths, horizon_hours) if history_paths else None
    if extra is not None:
        log(f"{extra.height} healthy-window rows from {len(history_paths)} start-stop file(s)")
    return labeled, extra, retired


def train_from_backblaze(
    paths: Sequence[Path],
    output: Path | None,
    opts: TrainOptions,
    baselines: bool = True,
    log: Callable[[str], None] = print,
    history_paths: Sequence[Path] = (),
) -> tuple[Bundle, dict[str, Any]]:
    """Train the disk model on Backblaze files (plus healthy windows from start-stop `history_paths`); save it
    to `output` (if given) with its metrics and the two reference baselines evaluated on the same unseen test
    drives: on all of them, on the same-era subset, and (model and rule) without retired healthy drives."""
    labeled, extra, retired = _inputs(paths, history_paths, opts.horizon_hours, log)
    digest = file_hash([*paths, *history_paths])
    bundle, test = fit(labeled, DISK_SPEC, opts, data_hash=digest, log=log, extra_negatives=extra)
    del extra
    bundle.metrics["test_same_era"] = same_era(test, opts.horizon_hours, bundle.threshold)
    bundle.metrics["test_in_service"] = in_service(test, retired, opts.horizon_hours, bundle.threshold)
    bundle.metrics["test_by_warning"] = by_warning(test, opts.horizon_hours)
    report: dict[str, Any] = {"model": bundle.metrics["test"], "model_same_era": bundle.metrics["test_same_era"],
                              "model_in_service": bundle.metrics["test_in_service"],
                              "model_by_warning": bundle.metrics["test_by_warning"]}
    if baselines:
        report |= rule_baselines(labeled, test, retired, opts.horizon_hours)
        report["plain_lightgbm"] = plain_baseline(labeled, DISK_SPEC, opts, (*DISK_CRITICAL, "smart_9_raw"))
        bundle.metrics["baselines"] = {k: v for k, v in report.items() if not k.startswith("model")}
    bundle.training_window["files"] = ", ".join(Path(p).name for p in [*paths, *history_paths])
    if output is not None:
        bundle.save(output)
    return bundle, report


def cross_validate_backblaze(
    paths: Sequence[Path],
    opts: TrainOptions,
    k: int,
    log: Callable[[str], None] = print,
    history_paths: Sequence[Path] = (),
) -> dict[str, Any]:
    """`train_from_backblaze`'s model in k folds (nothing saved): per-fold and mean test figures, on all test
    drives, the same-era ones and those in service, beside the Backblaze rule on the same drives."""
    labeled, extra, retired = _inputs(paths, history_paths, opts.horizon_hours, log)
    folds = []
    for bundle, test in cross_validate(labeled, DISK_SPEC, opts, k, extra, log):
        folds.append({
            "model": bundle.metrics["test"],
            "model_same_era": same_era(test, opts.horizon_hours, bundle.threshold),
            "model_in_service": in_service(test, retired, opts.horizon_hours, bundle.threshold),
            "model_by_warning": by_warning(test, opts.horizon_hours),
            **rule_baselines(labeled, test, retired, opts.horizon_hours),
            "trees": bundle.metrics["trees"],
        })
    keys = ("recall_at_far_0.01", "recall_at_far_0.001", "far_at_threshold", "recall_at_threshold",
            "median_lead_hours_at_far_0.01", "entities_failed", "entities_healthy")
    mean = {
        name: {key: float(np.mean([f[name][key] for f in folds if f[name].get(key) is not None])) for key in keys}
        for name in ("model", "model_same_era", "model_in_service", "backblaze_rule", "backblaze_rule_in_service")
    }
    warned = {key: sum(f["model_by_warning"][key] for f in folds) for key in folds[0]["model_by_warning"]}
    return {"folds": k, "mean": mean, "model_by_warning_total": warned, "per_fold": folds}


def train_job(paths: Sequence[Path], output: Path, opts: TrainOptions) -> str:
    """Picklable entry for `train.train_in_subprocess`: train, save to `output`, return the version."""
    bundle, _ = train_from_backblaze(paths, output, opts, baselines=False, log=lambda _m: None)
    return bundle.version
