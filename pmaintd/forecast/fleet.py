"""Host and network kinds: their feature specs, their input frames from the store, and labeled training data.

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
from pmaintd.forecast.features import FeatureSpec, build_features
from pmaintd.forecast.inputs import host_input, network_input
from pmaintd.forecast.labels import Incident, incidents_frame, label_rows
from pmaintd.store import Store

HOST_SPEC = FeatureSpec(
    kind="host",
    counters=("edac_ce", "edac_ue", "disk_realloc_max", "disk_pending_max"),
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
    gauges=("rx_dbm", "temp_c", "down_admin_up"),
    windows=(3, 12, 48),
    step="1h",
    entity="link",
    time="time",
    group=None,
)

ANOMALY_METRICS = ("cpu_used", "mem_used_percent", "load_per_cpu")
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
    "host": FleetKind(HOST_SPEC, host_frame),
    "network": FleetKind(NETWORK_SPEC, network_input),
}


def labeled_from_store(
    store: Store, kind: str, incidents: list[Incident], start: int | None, stop: int | None, horizon_hours: float
) -> pl.DataFrame:
    """Feature rows with labels for one kind, from the store's telemetry and the given incidents."""
    k = KINDS[kind]
    feats = build_features(k.frame(store, start, stop), k.spec)
    failures = incidents_frame(incidents, kind)
    return label_rows(feats, failures, horizon_hours, k.spec.entity, k.spec.time)
