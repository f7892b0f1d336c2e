"""Forecasts in, decisions out: which policy applies to a forecast, and what it decided and why.

A forecast is what the forecasting job produces (and what `actions evaluate --forecasts FILE` reads as JSON
lines): `kind`, `entity`, `probability`, `horizon_hours`, optionally `reasons`, `host`, `confidence`, `time`.
A Decision always carries a human reason, including why something was NOT acted on (below threshold, limit,
cooldown, low confidence escalated to approval, observe mode), because that is what operators read when they
test a policy before trusting it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pmaintd.telemetry import FORECAST, parse_time

log = logging.getLogger(__name__)

OUTCOMES = (
    "acted", "would_act", "proposed", "observed", "deferred", "duplicate", "below_threshold", "stale", "no_policy",
)  # fmt: skip
"""What a decision can be: acted (auto, carried out), would_act (the same in a dry run), proposed (waits for
approval), observed (observe mode), deferred (a limit or cooldown), duplicate (this forecast window already has
its action), below_threshold, stale (the forecast's window already ended), no_policy."""


class ForecastError(ValueError):
    """A forecast record that cannot be used; the message names the line or record and the field."""


@dataclass(frozen=True)
class Forecast:
    """One scored entity as the policies see it (from the forecasting job, a store row, or a JSON line)."""

    kind: str
    entity: str
    probability: float
    horizon_hours: float
    reasons: tuple[Any, ...] = ()
    host: str | None = None
    """The host the entity lives on (a disk's server); `{host}` falls back to the entity itself."""
    confidence: float | None = None
    """How sure the model is, 0..1; when absent the probability stands in for it."""
    time: float = field(default_factory=time.time)
    """When the forecast was made (epoch seconds); its window is [time, time + horizon)."""

    @classmethod
    def from_mapping(cls, obj: Mapping[str, Any], where: str = "forecast") -> Forecast:
        """Build from a JSON object or a `pmaintd_forecast` row; raise ForecastError naming the bad field."""
        if not isinstance(obj, Mapping):
            raise ForecastError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        for key in ("kind", "entity", "probability", "horizon_hours"):
            if obj.get(key) in (None, ""):
                raise ForecastError(f"{where}: {key} is missing")
        kind, entity = obj["kind"], obj["entity"]
        if not isinstance(kind, str) or not isinstance(entity, str):
            raise ForecastError(f"{where}: kind and entity must be strings")
        prob = _number(obj["probability"], "probability", where)
        if not 0.0 <= prob <= 1.0:
            raise ForecastError(f"{where}: probability {prob!r} is not between 0 and 1")
        horizon = _number(obj["horizon_hours"], "horizon_hours", where)
        if horizon <= 0:
            raise ForecastError(f"{where}: horizon_hours {horizon!r} must be greater than 0")
        conf = obj.get("confidence")
        confidence = None if conf is None else _number(conf, "confidence", where)
        reasons = obj.get("reasons") or ()
        if isinstance(reasons, str):
            try:
                reasons = json.loads(reasons)
            except ValueError:
                reasons = [reasons]
        if not isinstance(reasons, list | tuple):
            reasons = [reasons]
        host = obj.get("host")
        return cls(kind, entity, prob, horizon, tuple(reasons), str(host) if host else None, confidence,
                   _epoch(obj.get("time"), where))  # fmt: skip

    @property
    def window_end(self) -> float:
        return self.time + self.horizon_hours * 3600.0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "entity": self.entity, "probability": self.probability,
                "horizon_hours": self.horizon_hours, "host": self.host, "reasons": list(self.reasons)}  # fmt: skip


def _number(v: Any, key: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ForecastError(f"{where}: {key} {v!r} is not a finite number")
    return float(v)


def _epoch(v: Any, where: str) -> float:
    if v is None:
        return time.time()
    if isinstance(v, datetime):
        return v.timestamp() if v.tzinfo else parse_time(v.isoformat()) / 1e9
    if isinstance(v, str):
        try:
            return parse_time(v) / 1e9
        except ValueError:
            raise ForecastError(f"{where}: time {v!r} is not an RFC 3339 time") from None
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v / 1e9 if v > 1e12 else float(v)  # ns (as the store keeps them) or seconds
    raise ForecastError(f"{where}: time {v!r} is not a time")


def read_forecasts(path: Path) -> list[Forecast]:
    """JSON lines, one forecast per line (blank lines and lines starting with # ignored)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ForecastError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_forecast_lines(text.splitlines(), str(path))


def parse_forecast_lines(lines: Iterable[str], source: str = "forecasts") -> list[Forecast]:
    """JSON-lines forecasts; the first bad line raises ForecastError naming `source` and the line, so an
    operator's file is used whole or not at all."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ForecastError(f"{source} line {n}: not JSON ({exc})") from None
        out.append(Forecast.from_mapping(obj, f"{source} line {n}"))
    return out


def latest_forecasts(store: Any, since_ns: int) -> list[Forecast]:
    """The newest `pmaintd_forecast` point per (kind, entity) written since `since_ns`: what the daemon's
    policy job hands to `ActionEngine.run_once` after each forecasting run."""
    frame = store.query(FORECAST, start=since_ns)
    if frame.is_empty():
        return []
    newest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in frame.sort("time").iter_rows(named=True):
        newest[(row.get("kind"), row.get("entity"))] = row
    out = []
    for (kind, entity), row in newest.items():
        try:
            out.append(Forecast.from_mapping(row, f"{FORECAST} {kind}/{entity}"))
        except ForecastError as exc:  # one malformed point must not hide every other forecast
            log.warning("skipping forecast: %s", exc)
    return out


@dataclass
class Decision:
    """What the engine decided for one (forecast, policy); `reason` says why, in an operator's words."""

    forecast: Forecast
    policy: str | None
    action: str | None
    outcome: str
    reason: str
    action_id: int | None = None
    state: str | None = None
    """The action's state when the engine returned (after carrying it out, for `acted`)."""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown decision outcome {self.outcome!r}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.forecast.kind, "entity": self.forecast.entity,
                "probability": self.forecast.probability, "horizon_hours": self.forecast.horizon_hours,
                "policy": self.policy, "action": self.action, "outcome": self.outcome, "reason": self.reason,
                "action_id": self.action_id, "state": self.state}  # fmt: skip


def low_confidence(forecast: Forecast, min_confidence: float | None) -> str | None:
    """Why an auto policy must escalate to approval for this forecast, or None."""
    if min_confidence is None:
        return None
    conf = forecast.probability if forecast.confidence is None else forecast.confidence
    if conf < min_confidence:
        return f"low confidence {conf:.3g} < min_confidence {min_confidence:g}: escalated to approval"
    return None
