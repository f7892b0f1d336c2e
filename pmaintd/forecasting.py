"""The daemon's forecasting job: models loaded once, every entity scored, forecasts handed to the policies.

Wiring only (like daemon.py, the one other place allowed to join forecast/ and act/): scoring is
`pmaintd.forecast.scoring`, actions are `pmaintd.act.engine.ActionEngine`. Everything here runs in ONE
dedicated worker thread of the daemon (features and LightGBM are CPU work that must stay off the event loop,
and the action engine keeps its own sqlite connection), and writes through the daemon's store writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pmaintd.config import Config
from pmaintd.forecast.bundle import Bundle, Registry, load
from pmaintd.store import Store

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model bundle that exists but cannot be loaded; the message names the kind and the path."""


class LoadedModels(Registry):
    """The model registry, with each kind's current bundle loaded once and kept in memory.

    `refresh()` reloads a kind only when its current bundle changed (a promotion replaces the `current`
    pointer; a rewrite changes bundle.json's mtime), so calling it before every scoring run is cheap and a
    promotion by `pmaintd retrain` takes effect without a restart. Scoring asks `current(kind)` as of any
    Registry, and gets the loaded bundle.
    """

    def __init__(self, state_dir: Path, kinds: Sequence[str]) -> None:
        super().__init__(state_dir)
        self.kinds = list(kinds)
        self._loaded: dict[str, tuple[tuple[str, int], Bundle]] = {}

    def refresh(self, force: bool = False) -> list[str]:
        """Load what changed (everything with force); returns "kind version" of each newly loaded bundle.
        Raises ModelError for a bundle that cannot be loaded (the previously loaded one stays in use)."""
        changed = []
        for kind in self.kinds:
            path = self.current_path(kind)
            if path is None:
                self._loaded.pop(kind, None)
                continue
            try:
                stamp = (str(path), (path / "bundle.json").stat().st_mtime_ns)
                if not force and kind in self._loaded and self._loaded[kind][0] == stamp:
                    continue
                bundle = load(path)
            except Exception as exc:  # BundleError, LightGBM's own errors, a file vanishing mid-promotion
                raise ModelError(f"model {kind} at {path}: {exc}") from None
            self._loaded[kind] = (stamp, bundle)
            changed.append(f"{kind} {bundle.version}")
        for kind in set(self._loaded) - set(self.kinds):
            del self._loaded[kind]
        return changed

    def current(self, kind: str) -> Bundle | None:
        entry = self._loaded.get(kind)
        return entry[1] if entry else None

    def describe(self) -> str:
        """e.g. "disk 20261129T120000Z, host none"."""
        return ", ".join(f"{k} {self._loaded[k][1].version if k in self._loaded else 'none'}" for k in self.kinds)

    def any(self) -> bool:
        return bool(self._loaded)


@dataclass
class CycleResult:
    """One forecasting run: what was scored, and what the policies decided."""

    scored: int
    by_level: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, level) -> forecasts."""
    decisions: dict[str, int] = field(default_factory=dict)
    """decision outcome -> count."""
    seconds: float = 0.0

    @property
    def alarms(self) -> int:
        return sum(n for (_k, level), n in self.by_level.items() if level == "alarm")


class ForecastJob:
    """Scores every entity that has a model, writes `pmaintd_forecast` (and `pmaintd_anomaly` for hosts and
    links), and runs the policies on the forecasts.

    Build, run and close it in the same thread (the action engine's database connection lives there).
    `store` writes go through the daemon's single writer; reads go to the store.
    """

    def __init__(self, cfg: Config, state_dir: Path, store: Store, models: LoadedModels) -> None:
        from pmaintd.act.engine import ActionEngine
        from pmaintd.grafana import annotator

        self.cfg = cfg
        self.store = store
        self.models = models
        # Every action transition is also a Grafana annotation when [grafana] is configured (best effort).
        annotate = annotator(cfg.grafana)
        self.engine = ActionEngine(cfg, state_dir, store, annotate=annotate) if cfg.policies else None

    def recover(self) -> int:
        """Settle actions a previous process left running (before the daemon reports ready)."""
        return len(self.engine.recover()) if self.engine is not None else 0

    def run(self, now: int) -> CycleResult:
        from pmaintd.act.policy import Forecast as ActForecast
        from pmaintd.forecast import scoring
        from pmaintd.forecast.fleet import anomaly_points

        t0 = time.monotonic()
        forecasts = scoring.forecasts(self.store, self.models, list(self.cfg.forecast.kinds), now, self.cfg.forecast)
        # Unsupervised anomaly scores need no model: they cover failures no incident has taught a model yet.
        self.store.write([f.to_point() for f in forecasts] + anomaly_points(self.store, now))
        result = CycleResult(len(forecasts))
        for f in forecasts:
            result.by_level[(f.kind, f.level)] = result.by_level.get((f.kind, f.level), 0) + 1
        if self.engine is not None:
            actionable = [
                ActForecast.from_mapping(f.to_json(), f"forecast {f.kind} {f.entity}")
                for f in forecasts
                if f.probability is not None
            ]
            for d in self.engine.run_once(actionable):
                result.decisions[d.outcome] = result.decisions.get(d.outcome, 0) + 1
        result.seconds = time.monotonic() - t0
        return result

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
