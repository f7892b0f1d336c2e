"""Live forecasts: score every entity of every kind that has a model, from the store's recent telemetry.

The daemon calls `run_forecasts(store, registry, kinds, now, cfg)` every `[forecast] interval` (off the event
loop: it builds features) and writes the returned `pmaintd_forecast` points; `pmaintd forecast` calls
`forecasts()` and prints them. Each entity is scored at its newest step with the same feature function that
trained the model. An entity with less than `min_history` of data gets level "insufficient_history" and no
probability, because a window of one or two samples cannot support a number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pmaintd.config import ForecastConfig, parse_duration
from pmaintd.forecast import backblaze
from pmaintd.forecast.bundle import Bundle, Registry
from pmaintd.forecast.explain import top_contributions
from pmaintd.forecast.features import DISK_SPEC, build_features
from pmaintd.forecast.fleet import KINDS as FLEET_KINDS
from pmaintd.forecast.fleet import FleetKind
from pmaintd.store import Store
from pmaintd.telemetry import FORECAST, SMART_ATTRIBUTE, SMART_DEVICE, Point

ALARM, WATCH, OK, INSUFFICIENT = "alarm", "watch", "ok", "insufficient_history"


def disk_frame(store: Store, start: int | None, stop: int | None) -> pl.DataFrame:
    """Backblaze-shaped disk history (serial_number, model, host, date, smart_N_raw) from the store."""
    attrs = store.query(SMART_ATTRIBUTE, start, stop)
    devices = store.query(SMART_DEVICE, start, stop)
    return backblaze.from_store_frames(attrs, devices)


def sources() -> dict[str, FleetKind]:
    """Every kind pmaintd can score: disk (here) and host/network (forecast.fleet)."""
    return {"disk": FleetKind(DISK_SPEC, disk_frame, horizon_hours=168.0, history_hours=35 * 24.0), **FLEET_KINDS}


@dataclass
class Forecast:
    kind: str
    entity: str
    host: str
    probability: float | None
    level: str
    threshold: float
    horizon_hours: float
    model_version: str
    time: int
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def to_point(self) -> Point:
        fields: dict[str, float | str] = {
            "level": self.level,
            "horizon_hours": self.horizon_hours,
            "threshold": self.threshold,
            "reasons": json.dumps(self.reasons, separators=(",", ":")),
        }
        if self.probability is not None:
            fields["probability"] = self.probability
        tags = {"kind": self.kind, "entity": self.entity, "host": self.host, "model_version": self.model_version}
        return Point(FORECAST, tags, fields, self.time)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def level_of(p: float, threshold: float) -> str:
    """alarm at the bundle's threshold; watch from half of it (a policy may act on either)."""
    return ALARM if p >= threshold else WATCH if p >= threshold / 2 else OK


def score_kind(
    kind: str, frame: pl.DataFrame, bundle: Bundle, now: int, cfg: ForecastConfig
) -> list[Forecast]:
    """Forecasts for every entity in `frame` (the kind's input over the lookback), scored at its newest step."""
    src = sources()[kind]
    spec = src.spec
    if frame.is_empty():
        return []
    feats = build_features(frame, spec)
    steps = feats.group_by(spec.entity).agg(pl.len().alias("__n"))
    need = max(1, math.ceil(cfg.min_history / parse_duration(spec.step)))
    latest = feats.group_by(spec.entity).agg(pl.all().sort_by(spec.time).last()).join(steps, on=spec.entity)
    if "host" in frame.columns and spec.entity != "host":  # a host's own forecasts: the entity is the host
        hosts = frame.group_by(spec.entity).agg(pl.col("host").drop_nulls().last())
        latest = latest.join(hosts, on=spec.entity, how="left")
    enough = latest.filter(pl.col("__n") >= need)
    short = latest.filter(pl.col("__n") < need)
    probs = bundle.predict(enough)
    reasons = top_contributions(bundle, enough, cfg.top_reasons)
    out: list[Forecast] = []
    for row, p, why in zip(enough.iter_rows(named=True), probs, reasons, strict=True):
        out.append(
            Forecast(kind, str(row[spec.entity]), str(row.get("host") or row[spec.entity]), float(p),
                     level_of(float(p), bundle.threshold), bundle.threshold, bundle.horizon_hours, bundle.version,
                     now, why)
        )
    for row in short.iter_rows(named=True):
        out.append(
            Forecast(kind, str(row[spec.entity]), str(row.get("host") or row[spec.entity]), None, INSUFFICIENT,
                     bundle.threshold, bundle.horizon_hours, bundle.version, now)
        )
    return sorted(out, key=lambda f: -1.0 if f.probability is None else f.probability, reverse=True)


def forecasts(
    store: Store, registry: Registry, kinds: list[str], now: int, cfg: ForecastConfig
) -> list[Forecast]:
    """Forecasts of every listed kind that has a model (promoted or shipped); kinds without one are skipped."""
    out: list[Forecast] = []
    for kind in kinds:
        bundle = registry.current(kind)
        if bundle is None:
            continue
        src = sources()[kind]
        start = now - int(max(cfg.lookback, src.history_hours * 3600) * 1e9)
        out += score_kind(kind, src.frame(store, start, now + 1), bundle, now, cfg)
    return out


def run_forecasts(store: Store, registry: Registry, kinds: list[str], now: int, cfg: ForecastConfig) -> list[Point]:
    """The daemon's forecasting job: `pmaintd_forecast` points for every scored entity (caller writes them)."""
    return [f.to_point() for f in forecasts(store, registry, kinds, now, cfg)]
