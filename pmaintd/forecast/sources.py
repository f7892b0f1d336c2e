"""Labeled training rows for retraining, from the store (telemetry + incidents) and/or Backblaze files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pmaintd.forecast import backblaze, incidents
from pmaintd.forecast.disk import labeled_from_frame
from pmaintd.forecast.features import DISK_SPEC, FeatureSpec, build_features
from pmaintd.forecast.fleet import KINDS as FLEET_KINDS
from pmaintd.forecast.labels import Incident, incidents_frame, label_rows
from pmaintd.forecast.scoring import disk_frame
from pmaintd.forecast.train import file_hash
from pmaintd.store import Store


class RetrainDataError(Exception):
    """There is nothing (or not enough) to train on; the message says what is missing."""


def labeled_live(
    frame: pl.DataFrame, spec: FeatureSpec, known: Sequence[Incident], horizon_hours: float
) -> pl.DataFrame:
    """Labeled feature rows of live telemetry (a kind's frame read from the store): the telemetry's end is
    when the incidents are known through, so a healthy entity's last horizon is left out (`label_rows`)."""
    feats = build_features(frame, spec)
    end = feats[spec.time].max() if feats.height else None
    return label_rows(feats, incidents_frame(known, spec.kind), horizon_hours, spec.entity, spec.time, known_until=end)


def labeled_for_retrain(
    kind: str, store: Store | None, extra: Sequence[Incident], files: Sequence[Path], horizon_hours: float
) -> tuple[pl.DataFrame, FeatureSpec, str]:
    """(labeled rows, spec, data hash) for one kind. Store incidents and `extra` label the store's telemetry;
    Backblaze files carry their own failure labels."""
    parts: list[pl.DataFrame] = []
    hashes: list[str] = []
    store_rows = 0  # telemetry rows the store had, labeled or not yet (see `labeled_live`)
    known = list(extra)
    if store is not None:
        known += incidents.read(store, kind, 0, None, incidents.FAILURE)
    if kind == "disk":
        spec = DISK_SPEC
        if store is not None:
            frame = disk_frame(store, None, None)
            store_rows = frame.height
            if frame.height:
                parts.append(labeled_live(frame, spec, known, horizon_hours))
                hashes.append(f"store:{frame.height}:{frame['date'].max()}")
        if files:
            parts.append(labeled_from_frame(backblaze.read_backblaze(files), horizon_hours))
            hashes.append(file_hash(files))
    else:
        spec = FLEET_KINDS[kind].spec
        if store is None:
            raise RetrainDataError(f"{kind} models train on the store's telemetry; do not pass --no-store")
        frame = FLEET_KINDS[kind].frame(store, None, None)
        store_rows = frame.height
        parts.append(labeled_live(frame, spec, known, horizon_hours))
        hashes.append(f"store:{parts[0].height}")
    parts = [p for p in parts if p.height]
    if not parts and store_rows:
        raise RetrainDataError(
            f"the store's {kind} telemetry is all from the last {horizon_hours:g} hours (the forecast horizon): "
            "whether those entities fail within it is not known yet, so nothing can be labeled; retrain once "
            "there is telemetry older than the horizon" + (" (or pass --backblaze files)" if kind == "disk" else "")
        )
    if not parts:
        raise RetrainDataError(f"no {kind} telemetry to train on (store empty and no files given)")
    labeled = pl.concat(parts, how="diagonal_relaxed").unique(subset=[spec.entity, spec.time], keep="first")
    labeled = labeled.sort(spec.entity, spec.time)
    if labeled["label"].sum() == 0:
        raise RetrainDataError(f"no {kind} failures in the data: record incidents (pmaintd incidents import FILE)")
    if labeled["label"].min() == 1:
        raise RetrainDataError(
            f"no {kind} row is known to be healthy yet: every row is within {horizon_hours:g} hours of a failure or "
            "of the end of the telemetry; retrain once there is telemetry older than the horizon"
        )
    if store is not None:
        labeled = weight_false_alarms(
            labeled, incidents.read(store, kind, 0, None, incidents.FALSE_ALARM), spec, horizon_hours
        )
    return labeled, spec, "+".join(hashes)


FALSE_ALARM_WEIGHT = 5.0
"""Training weight of the rows an operator marked as a false alarm (hard negatives)."""


def weight_false_alarms(
    labeled: pl.DataFrame, marks: Sequence[Incident], spec: FeatureSpec, horizon_hours: float
) -> pl.DataFrame:
    """An operator's false-alarm mark says: the forecasts for this entity in the horizon before the mark were
    wrong. Those rows are negatives the model got wrong, so they weigh FALSE_ALARM_WEIGHT in training (and are
    never dropped by negative subsampling). A row that is positive (the entity did fail) keeps its label:
    a real failure outranks an earlier judgement."""
    if not marks:
        return labeled
    ent, tm = spec.entity, spec.time
    m = pl.DataFrame(
        {ent: [i.entity for i in marks], "__mark": [i.time // 1000 for i in marks]},
        schema={ent: pl.Utf8, "__mark": pl.Int64},
    ).with_columns(pl.col("__mark").cast(pl.Datetime("us", "UTC")))
    horizon = pl.duration(microseconds=int(horizon_hours * 3600 * 1_000_000))
    hit = (
        labeled.select(ent, tm, "label")
        .join(m, on=ent)
        .filter((pl.col("label") == 0) & (pl.col(tm) <= pl.col("__mark")) & (pl.col(tm) > pl.col("__mark") - horizon))
        .select(ent, tm)
        .unique()
        .with_columns(pl.lit(FALSE_ALARM_WEIGHT).alias("weight"))
    )
    return labeled.join(hit, on=[ent, tm], how="left").with_columns(pl.col("weight").fill_null(1.0))
