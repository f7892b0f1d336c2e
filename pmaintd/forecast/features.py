"""The ONE feature function shared by training, backtest and live scoring.

`build_features` turns entity-sorted telemetry into one feature row per (entity, step). Every feature of a row
uses only that entity's rows at or before the row's time, plus peer statistics of the same group (disk model)
from the SAME step only, so truncating the input's future never changes an earlier feature
(tests/forecast/test_features.py checks this).

Per-group (disk model) risk and counter levels are not computed here: they are learned from training labels,
so they live in the bundle (`forecast.groups`, applied by `Bundle.matrix`) like a fitted encoder.

Deliberately absent: calendar time, days since first seen, number of rows seen. In the Backblaze training data
every drive's history is cut to its last 120 days, so those would tell the model where a record ends instead
of how a disk behaves (leakage); age comes from power-on hours instead. Peer counts are absent for the same reason.
Also absent: days since a counter last grew (it made per-drive recall at 1% FAR worse, 0.52 -> 0.36, by making
scores spike on healthy drives right after any single increase).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

FEATURE_SPEC_VERSION = 6
"""Bump whenever a feature's definition changes: a bundle trained on another version is refused."""


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute for one entity kind. Column names refer to the resampled input frame."""

    kind: str
    counters: tuple[str, ...]
    """Cumulative error counts: last, growth and increase-days over each window, slope, peer-relative."""
    gauges: tuple[str, ...]
    """Levels (temperature, load): last, deviation from the window mean, window range, slope."""
    levels: tuple[str, ...] = ()
    """Columns used only as their last value (and peer-relative when listed in `peer`), e.g. age."""
    sums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Derived counters: name -> columns summed (nulls as 0) before windowing."""
    peer: tuple[str, ...] = ()
    """Columns compared with the same group's same-step peers."""
    group_relative: tuple[str, ...] = ()
    """Counters whose last value is also given relative to the group's healthy level, with the group's failure
    risk beside them. Both come from a table learned on the training drives and stored in the bundle
    (`forecast.groups`), not from this function: see its docstring for why."""
    windows: tuple[int, ...] = (1, 3, 7, 30)
    """Window lengths in steps."""
    step: str = "1d"
    entity: str = "entity"
    time: str = "time"
    group: str | None = "model"
    version: int = FEATURE_SPEC_VERSION

    @property
    def inputs(self) -> tuple[str, ...]:
        """Raw metric columns the spec reads (absent ones are treated as all-null)."""
        derived = tuple(c for cs in self.sums.values() for c in cs)
        seen = dict.fromkeys(self.counters + self.gauges + self.levels + derived)
        return tuple(c for c in seen if c not in self.sums)


DISK_CRITICAL = ("smart_5_raw", "smart_187_raw", "smart_188_raw", "smart_197_raw", "smart_198_raw")
"""Backblaze's five failure-predicting SMART attributes (reallocated, reported uncorrectable, command
timeout, pending, offline uncorrectable)."""

DISK_SPEC = FeatureSpec(
    kind="disk",
    counters=(*DISK_CRITICAL, "smart_10_raw", "smart_12_raw", "smart_189_raw", "smart_196_raw", "err_sum"),
    # Temperature (194) and raw read error rate (1) exist only in the 2013 file here, so their presence
    # would identify a data source rather than a disk's state: not used by the shipped spec.
    gauges=(),
    # Power-on hours is the disk's age. Its windowed changes are not used: in the training data they only
    # measure how many days of record a window holds (the record-length leak described above).
    levels=("smart_9_raw",),
    sums={"err_sum": DISK_CRITICAL},
    # No peer features for the shipped disk model. In the Backblaze histories (each drive's last 120 days) the
    # drives present on a day before mid-2016 are mostly drives about to fail, so same-day peer statistics
    # tell the era, and the era tells "this drive will fail": with them recall at 1% FAR rose from 0.52 to 0.57
    # on all test drives but not at all on 2016 failures, where the population is a normal fleet (0.34 both).
    # Fleets scored live have normal populations; a spec for them may list peer columns.
    peer=(),
    # Instead: each disk model's failure risk and its healthy drives' usual counter levels, learned on the
    # training drives only (forecast.groups). Under a time- and drive-disjoint test (train before 2016, score
    # 2016 on unseen drives) they raised recall at 1% FAR from 0.47 to 0.52 in a development study (MODEL_CARD.md).
    group_relative=(*DISK_CRITICAL, "err_sum", "smart_12_raw", "smart_189_raw"),
    entity="serial_number",
    time="date",
    group="model",
)

SPECS: dict[str, FeatureSpec] = {"disk": DISK_SPEC}


def _as_utc_us(frame: pl.LazyFrame, col: str) -> pl.Expr:
    dtype = frame.collect_schema()[col]
    e = pl.col(col)
    if dtype == pl.Date:
        return e.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        e = e.dt.cast_time_unit("us")
        return e.dt.replace_time_zone("UTC") if dtype.time_zone is None else e.dt.convert_time_zone("UTC")
    if dtype == pl.Utf8:
        return e.str.to_datetime(time_unit="us").dt.replace_time_zone("UTC")
    raise TypeError(f"time column {col!r} has type {dtype}, expected a date or datetime")


def resample(frame: pl.DataFrame | pl.LazyFrame, spec: FeatureSpec) -> pl.DataFrame:
    """One row per (entity, step): the last value of each metric in the step, sorted by entity then time.

    Missing metric columns are added as nulls, so a year or device type without an attribute still fits the
    spec. The time becomes the step's start, as UTC microseconds.
    """
    lf = frame.lazy()
    names = lf.collect_schema().names()
    keep = [spec.entity, spec.time] + ([spec.group] if spec.group and spec.group in names else [])
    metrics = [c for c in spec.inputs if c in names]
    lf = lf.select(
        pl.col(spec.entity).cast(pl.Utf8),
        _as_utc_us(lf, spec.time).dt.truncate(spec.step).alias(spec.time),
        *[pl.col(c) for c in keep[2:]],
        *[pl.col(c).cast(pl.Float64) for c in metrics],
    )
    out = (
        lf.sort(spec.entity, spec.time)
        .group_by(spec.entity, spec.time, maintain_order=True)
        .agg(pl.all().drop_nulls().last())
        .with_columns(pl.lit(None, pl.Float64).alias(c) for c in spec.inputs if c not in names)
    )
    if spec.group and spec.group not in names:
        out = out.with_columns(pl.lit("", pl.Utf8).alias(spec.group))
    sums = [pl.sum_horizontal(*[pl.col(c).fill_null(0) for c in cols]).alias(n) for n, cols in spec.sums.items()]
    return out.with_columns(sums).collect()


def peer_stats(resampled: pl.DataFrame | pl.LazyFrame, spec: FeatureSpec) -> pl.DataFrame:
    """Per (group, step): mean of log1p(value) of each peer column over the entities seen in that step.

    Computed from one step's rows only, so it never looks ahead; it can be computed once over a whole input
    and joined to chunks of entities (the backtest does this to stream).
    """
    if not spec.peer or spec.group is None:
        return pl.DataFrame()
    return (
        resampled.lazy()
        .group_by(spec.group, spec.time)
        .agg(pl.col(c).clip(lower_bound=0).log1p().mean().alias(f"{c}__peerlog") for c in spec.peer)
        .collect()
    )


def _windowed(col: str, spec: FeatureSpec, counter: bool) -> list[pl.Expr]:
    """Window features over the `__k` axis: entity index * 2**32 + step index, so one rolling pass over the
    entity-sorted frame never mixes entities (their keys are 2**32 steps apart) and needs no per-group loop."""
    x = pl.col(col)
    out = [x.alias(f"{col}__last")]
    inc = pl.col(f"{col}__inc")
    for w in spec.windows:
        size = f"{w}i"
        lo = x.rolling_min_by("__k", window_size=size)
        if counter:
            out.append((x - lo).alias(f"{col}__growth_{w}"))
            out.append(inc.rolling_sum_by("__k", window_size=size).alias(f"{col}__incsteps_{w}"))
        else:
            hi = x.rolling_max_by("__k", window_size=size)
            mean = x.rolling_mean_by("__k", window_size=size)
            out.append((x - mean).alias(f"{col}__dev_{w}"))
            out.append((hi - lo).alias(f"{col}__range_{w}"))
    out.append(_slope(col, max(spec.windows)))
    return out


def _slope(col: str, w: int) -> pl.Expr:
    """Least-squares slope per step over the last w steps, from rolling means (no Python loop).

    Uses the step index `__t` (not `__k`) as the abscissa so that squares stay exact in float64."""
    t = pl.col("__t").cast(pl.Float64)
    x = pl.col(col)
    tx = pl.when(x.is_not_null()).then(t)  # rows where x is null must not count in either mean

    def m(e: pl.Expr) -> pl.Expr:
        return e.rolling_mean_by("__k", window_size=f"{w}i")

    var = m(tx * tx) - m(tx) ** 2
    cov = m(tx * x) - m(tx) * m(x)
    return pl.when(var > 1e-9).then(cov / var).otherwise(0.0).alias(f"{col}__slope_{w}")


def _step_days(step: str) -> float:
    units = {"d": 1.0, "h": 1 / 24, "m": 1 / 1440}
    return float(step[:-1]) * units[step[-1]]


def build_features(
    frame: pl.DataFrame | pl.LazyFrame,
    spec: FeatureSpec,
    peers: pl.DataFrame | None = None,
    resampled: bool = False,
    chunk_rows: int = 300_000,
) -> pl.DataFrame:
    """Feature rows (entity, time, group, features...) for every (entity, step) of the input.

    `peers` (from `peer_stats`) lets a caller that processes entities in chunks supply statistics computed
    over the whole fleet; by default they come from the input itself. Pass `resampled=True` when the frame
    already went through `resample` for this spec. Entities are processed `chunk_rows` at a time (whole
    entities), which bounds the float64 intermediates; the result is the same for any chunk size.
    """
    base = frame if resampled and isinstance(frame, pl.DataFrame) else resample(frame, spec)
    if peers is None:
        peers = peer_stats(base, spec)
    parts = [_features(base.slice(lo, hi - lo), spec, peers) for lo, hi in entity_chunks(base[spec.entity], chunk_rows)]
    if not parts:
        return _features(base, spec, peers)
    return pl.concat(parts) if len(parts) > 1 else parts[0]


def entity_chunks(entities: pl.Series, chunk_rows: int) -> list[tuple[int, int]]:
    """Row ranges of about chunk_rows that never split an entity (the series is sorted by entity)."""
    starts = np.flatnonzero(entities.ne_missing(entities.shift(1)).fill_null(True).to_numpy())
    bounds, lo = [], 0
    for s in starts[1:]:
        if s - lo >= chunk_rows:
            bounds.append((lo, int(s)))
            lo = int(s)
    if entities.len() > lo:
        bounds.append((lo, entities.len()))
    return bounds


def _features(base: pl.DataFrame, spec: FeatureSpec, peers: pl.DataFrame) -> pl.DataFrame:
    step_s = round(_step_days(spec.step) * 86400)
    ent = pl.col(spec.entity)
    same = ent == ent.shift(1)
    lf = base.lazy().with_columns(
        (pl.col(spec.time).dt.epoch("s") // step_s).alias("__t"),
        (~same).fill_null(True).cast(pl.Int64).cum_sum().alias("__e"),
    )
    lf = lf.with_columns((pl.col("__e") * 2**32 + pl.col("__t")).alias("__k"))
    lf = lf.with_columns(
        pl.when(same).then(pl.col(c) > pl.col(c).shift(1)).cast(pl.Float64).alias(f"{c}__inc") for c in spec.counters
    )
    exprs: list[pl.Expr] = []
    for c in spec.counters:
        exprs += _windowed(c, spec, counter=True)
    for c in spec.gauges:
        exprs += _windowed(c, spec, counter=False)
    exprs += [pl.col(c).alias(f"{c}__last") for c in spec.levels]
    lf = lf.with_columns(exprs)
    keys = [spec.entity, spec.time] + ([spec.group] if spec.group else [])
    if spec.peer and spec.group is not None and peers.height:
        lf = lf.join(peers.lazy(), on=[spec.group, spec.time], how="left")
        lf = lf.with_columns(
            (pl.col(c).clip(lower_bound=0).log1p() - pl.col(f"{c}__peerlog")).alias(f"{c}__peer") for c in spec.peer
        )
    names = feature_names(spec)
    return lf.select(*keys, *[pl.col(n).cast(pl.Float32) for n in names]).sort(spec.entity, spec.time).collect()


def feature_names(spec: FeatureSpec) -> list[str]:
    """The ordered feature list a bundle records; models are fed columns in exactly this order."""
    names: list[str] = []
    for c in spec.counters:
        names.append(f"{c}__last")
        for w in spec.windows:
            names += [f"{c}__growth_{w}", f"{c}__incsteps_{w}"]
        names.append(f"{c}__slope_{max(spec.windows)}")
    for c in spec.gauges:
        names.append(f"{c}__last")
        for w in spec.windows:
            names += [f"{c}__dev_{w}", f"{c}__range_{w}"]
        names.append(f"{c}__slope_{max(spec.windows)}")
    names += [f"{c}__last" for c in spec.levels]
    if spec.group is not None:
        names += [f"{c}__peer" for c in spec.peer]
    return names
