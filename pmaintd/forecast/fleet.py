"""Host and network kinds: their feature specs, their input frames from the store, and their anomaly scores.

Both use an hourly step and a 24-hour horizon. Hosts read CPU, memory, load, EDAC memory errors,
temperatures and their disks' SMART state, plus the unsupervised anomaly score of their load and memory (so a
failure mode without precedent still moves a feature). Links read error/discard counters, flaps, being down
while admin-up, optical receive power and temperature. Peer comparison is off for both: unlike disks, hosts
and links have no "model" whose siblings share a baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from pmaintd.forecast.anomaly import entity_scores
from pmaintd.forecast.features import FeatureSpec
from pmaintd.forecast.inputs import host_input, network_input
from pmaintd.store import Store
from pmaintd.telemetry import ANOMALY, Point

HOST_SPEC = FeatureSpec(
    kind="host",
    counters=(
        "edac_ce",
        "edac_ue",
        "diskio_io_time",
        "diskio_weighted_io_time",
        "disk_realloc_max",
        "disk_pending_max",
    ),
    gauges=("cpu_used", "mem_used_percent", "load_per_cpu", "temp_max", "disk_unhealthy", "anomaly"),
    windows=(3, 12, 48),
    step="1h",
    entity="host",
    time="time",
    group=None,
)

NETWORK_SPEC = FeatureSpec(
    kind="network",
    counters=("in_errors", "out_errors", "in_discards", "out_discards", "flaps"),
    gauges=("rx_dbm", "temp_c", "down_admin_up", "in_error_ratio"),
    windows=(3, 12, 48),
    step="1h",
    entity="link",
    time="time",
    group=None,
)

ANOMALY_METRICS = ("cpu_used", "mem_used_percent", "load_per_cpu")
ANOMALY_HISTORY_HOURS = 9 * 24.0
"""History that determines an anomaly score exactly (7 previous days, spread windows, floor window)."""
"""Host metrics whose unsupervised anomaly score (the largest of them) is the `anomaly` feature."""


def host_frame(store: Store, start: int | None, stop: int | None) -> pl.DataFrame:
    """host_input plus the causal anomaly score of each host's load and memory at every sample."""
    raw = host_input(store, start, stop)
    if raw.is_empty():
        return raw.with_columns(pl.lit(None, pl.Float64).alias("anomaly"))
    scores = entity_scores(raw, "host", ANOMALY_METRICS).select("host", "time", pl.col("score").alias("anomaly"))
    return raw.join(scores, on=["host", "time"], how="left")


@dataclass(frozen=True)
class FleetKind:
    """What the engine needs for one kind: its spec, how to read its input from the store, its horizon."""

    spec: FeatureSpec
    frame: Callable[[Store, int | None, int | None], pl.DataFrame]
    horizon_hours: float = 24.0
    history_hours: float = 72.0
    """How much history a live score reads (the longest window plus margin)."""


KINDS: dict[str, FleetKind] = {
    # A host's anomaly feature at time t depends on the week before t (same-slot days) plus its spread
    # windows: nine days of history make the live value equal the training value for samples up to 5 min.
    "host": FleetKind(HOST_SPEC, host_frame, history_hours=ANOMALY_HISTORY_HOURS),
    "network": FleetKind(NETWORK_SPEC, network_input),
}


def _network_anomaly_input(store: Store, start: int | None, stop: int | None) -> pl.DataFrame:
    """Links' optical power and error increments per sample (counters become per-sample deltas first)."""
    raw = network_input(store, start, stop)
    return raw.sort("link", "time").with_columns(
        pl.col("in_errors").diff().over("link").clip(lower_bound=0).alias("in_errors_delta")
    )


ANOMALY_SOURCES: dict[str, tuple[Callable[[Store, int | None, int | None], pl.DataFrame], str, tuple[str, ...]]] = {
    "host": (host_input, "host", ANOMALY_METRICS),
    "network": (_network_anomaly_input, "link", ("rx_dbm", "in_errors_delta")),
}


def anomaly_points(
    store: Store, now: int, lookback_s: float = ANOMALY_HISTORY_HOURS * 3600, fresh_s: float = 3600.0
) -> list[Point]:
    """`pmaintd_anomaly` points: each entity's latest anomaly score and the metric behind it.

    The lookback covers the seasonal comparison (a week of previous days) so a score at `now` is the same
    as the one a full-history computation would give. Entities with no sample in the last `fresh_s` get
    none: their last score was written when it was new.
    """
    out: list[Point] = []
    start = now - int(lookback_s * 1e9)
    for kind, (source, entity, metrics) in ANOMALY_SOURCES.items():
        frame = source(store, start, now + 1)
        if frame.is_empty():
            continue
        scores = entity_scores(frame, entity, list(metrics)).drop_nulls("score").filter(pl.col("score").is_not_nan())
        latest = scores.group_by(entity).agg(pl.all().sort_by("time").last())
        latest = latest.filter(pl.col("time").dt.epoch("ns") >= now - int(fresh_s * 1e9))
        for row in latest.iter_rows(named=True):
            t = int(row["time"].timestamp() * 1_000_000) * 1000
            out.append(
                Point(
                    ANOMALY, {"kind": kind, "entity": row[entity]}, {"score": row["score"], "metric": row["metric"]}, t
                )
            )
    return out
