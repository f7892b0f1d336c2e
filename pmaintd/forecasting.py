"""The daemon's forecasting job: models loaded once, every entity scored, forecasts handed to the policies.

Wiring only (like daemon.py, the one other place allowed to join forecast/ and act/): scoring is
`pmaintd.forecast.scoring`, actions are `pmaintd.act.engine.ActionEngine`. Everything here runs in ONE
dedicated worker thread of the daemon (features and LightGBM are CPU work that must stay off the event loop,
and the action engine keeps its own sqlite connection), and writes through the daemon's store writer.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmaintd.config import Config
from pmaintd.forecast.bundle import Bundle, BundleError, Registry, load
from pmaintd.store import Store

log = logging.getLogger(__name__)


PROBE_TIMEOUT = 60.0
"""Seconds a model file may take to parse in the probe process before it counts as broken."""

_PROBE = """
import ctypes, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash here is the expected answer, not worth a core dump
lib = ctypes.CDLL(sys.argv[1])
lib.LGBM_GetLastError.restype = ctypes.c_char_p
n, h = ctypes.c_int(0), ctypes.c_void_p()
if lib.LGBM_BoosterCreateFromModelfile(sys.argv[2].encode(), ctypes.byref(n), ctypes.byref(h)) != 0:
    sys.stderr.write("\\n" + lib.LGBM_GetLastError().decode(errors="replace") + "\\n")
    sys.exit(1)
lib.LGBM_BoosterFree(h)
"""


def probe_model_file(model_txt: Path) -> str | None:
    """Why LightGBM cannot load `model_txt`, or None when it can; found out in a child process.

    A truncated model.txt (a full disk, an interrupted copy) makes LightGBM's parser read past the end of its
    buffer and the process dies with SIGSEGV or SIGABRT: no Python exception to catch. Parsing it first in a
    throwaway process (the very library this process loaded, through ctypes: ~50 ms, no imports) turns that
    crash into a reason, so one damaged file costs one kind its model instead of the daemon its life.
    """
    from lightgbm.basic import _LIB  # the shared library this process uses, so the probe parses identically

    try:
        res = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _PROBE, str(_LIB._name), str(model_txt)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"{model_txt}: LightGBM did not finish reading it within {PROBE_TIMEOUT:g}s"
    if res.returncode == 0:
        return None
    if res.returncode < 0:
        name = signal.Signals(-res.returncode).name
        return f"{model_txt} is truncated or damaged: LightGBM crashed reading it ({name})"
    lines = [ln for ln in res.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return f"{model_txt}: LightGBM cannot read it: {lines[-1] if lines else f'exit {res.returncode}'}"


def load_checked(path: Path, kind: str) -> Bundle:
    """`bundle.load`, made safe for a long-running process: model.txt is probed first (see probe_model_file)
    and the bundle must be of `kind`. Raises BundleError with the reason."""
    model_txt = path / "model.txt"
    if model_txt.is_file():
        problem = probe_model_file(model_txt)
        if problem:
            raise BundleError(problem)
    try:
        bundle = load(path)
    except BundleError:
        raise
    except Exception as exc:  # LightGBM's own errors, a bundle.json without a key, a file vanishing mid-read
        raise BundleError(f"{path}: {type(exc).__name__}: {exc}") from None
    if bundle.kind != kind:
        raise BundleError(f"{path}: holds a {bundle.kind} model, not a {kind} model")
    return bundle


@dataclass(frozen=True)
class ModelState:
    """What one kind is scored with, and why. `pmaintd status`, STATUS=, /metrics and the log show this."""

    kind: str
    bundle: Bundle | None
    """The bundle in use; None: the kind is not scored."""
    source: str
    """"promoted", "shipped", or "none"."""
    path: Path | None
    problem: str | None = None
    """Why a bundle that exists is not in use (the promoted one when `fallback`, else every one)."""

    @property
    def usable(self) -> bool:
        return self.bundle is not None

    @property
    def fallback(self) -> bool:
        """The promoted bundle cannot be loaded and the shipped one scores instead."""
        return self.usable and self.problem is not None

    @property
    def version(self) -> str | None:
        return self.bundle.version if self.bundle else None

    def summary(self) -> str:
        """One phrase for STATUS= and `pmaintd status`."""
        if self.fallback:
            return f"{self.kind} model: promoted one broken, shipped {self.version} in use ({self.problem})"
        if self.problem:
            return f"{self.kind} model UNUSABLE, {self.kind} not scored: {self.problem}"
        return f"{self.kind} model {self.version or 'none'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "usable": self.usable,
            "fallback": self.fallback,
            "source": self.source,
            "version": self.version,
            "path": str(self.path) if self.path else None,
            "problem": self.problem,
        }


def _stamp(path: Path) -> tuple[object, ...]:
    """Changes whenever a bundle directory's files are replaced or rewritten (not only bundle.json: a
    model.txt copied over again must be tried again)."""
    out: list[object] = [str(path)]
    for name in ("bundle.json", "model.txt"):
        try:
            st = (path / name).stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class LoadedModels(Registry):
    """The model registry, with each kind's bundle loaded once and kept in memory, and each kind's state.

    `refresh()` looks at the disk again and loads a kind only when its bundles changed (a promotion replaces
    the `current` pointer; a copy or rewrite changes a file's mtime, size or inode), so calling it before every
    scoring run is cheap, and a promotion by `pmaintd retrain` (or a repaired bundle) takes effect without a
    restart. Scoring asks `current(kind)` as of any Registry, and gets the bundle in use.

    A bundle that cannot be loaded never stops the daemon: it costs its kind, and only that kind. When the
    promoted bundle is broken (typically: trained before an upgrade changed the feature-spec version) but the
    shipped one loads, the shipped one scores, with a warning. That is what the operator would get by removing
    the `current` pointer, it is the model a fresh install runs and was judged on held-out drives, and a
    fallback that predicts failures beats a blind spot on every disk until someone reads the log; forecasts
    carry `model_version`, so the switch is visible on every point, and the promoted bundle stays on disk,
    untouched, for the operator to inspect. With nothing loadable the kind is not scored, with an error. The
    choice depends only on what is on disk (not on what this process loaded before), so `pmaintd status` can
    compute the same state in its own process.
    """

    def __init__(
        self, state_dir: Path, kinds: Sequence[str], shipped_root: Path | None = None, report: bool = True
    ) -> None:
        super().__init__(state_dir, shipped_root)
        self.kinds = list(kinds)
        self.report = report
        """Log each change of a kind's state (the daemon); `pmaintd status` shows the states instead."""
        self._states: dict[str, ModelState] = {}
        self._stamps: dict[str, tuple[object, ...]] = {}

    def _candidates(self, kind: str) -> tuple[list[tuple[str, Path]], str | None]:
        """The bundles to try, in order: the promoted one (when the `current` pointer names one), the shipped;
        and why the pointer itself cannot be read, if it cannot."""
        out, problem = [], None
        try:
            version = self.current_version(kind)
        except (OSError, UnicodeDecodeError) as exc:
            version, problem = None, f"promoted bundle: cannot read {self.kind_dir(kind) / 'current'}: {exc}"
        if version:
            out.append(("promoted", self.kind_dir(kind) / version))
        shipped = self._shipped(kind)
        if (shipped / "bundle.json").is_file():
            out.append(("shipped", shipped))
        return out, problem

    def refresh(self, force: bool = False) -> list[str]:
        """Load what changed (everything with force); returns "kind version" of each newly loaded bundle.
        Problems are logged once, when they appear, and are kept in `states()`; nothing is raised."""
        changed = []
        for kind in self.kinds:
            candidates, pointer_problem = self._candidates(kind)
            stamp = (pointer_problem, *(_stamp(p) for _s, p in candidates))
            if not force and kind in self._states and self._stamps.get(kind) == stamp:
                continue
            before = self._states.get(kind)
            state = self._load_kind(kind, candidates, pointer_problem)
            self._states[kind], self._stamps[kind] = state, stamp
            self._report(state, before)
            if state.usable and (before is None or before.bundle is not state.bundle):
                changed.append(f"{kind} {state.version}")
        for kind in set(self._states) - set(self.kinds):
            del self._states[kind]
            self._stamps.pop(kind, None)
        return changed

    def _load_kind(self, kind: str, candidates: list[tuple[str, Path]], pointer_problem: str | None) -> ModelState:
        problems = [pointer_problem] if pointer_problem else []
        for source, path in candidates:
            try:
                bundle = load_checked(path, kind)
            except BundleError as exc:
                problems.append(f"{source} bundle: {exc}")
                continue
            return ModelState(kind, bundle, source, path, ", and ".join(problems) or None)
        return ModelState(kind, None, "none", None, ", and ".join(problems) or None)

    def _report(self, state: ModelState, before: ModelState | None) -> None:
        """One log line per change of a kind's state (refresh only looks again when the files changed)."""
        if not self.report:
            return
        kind = state.kind
        fix = (
            f"to fix it run `pmaintd retrain --kind {kind}` (trains and promotes a {kind} model for this pmaintd), "
            f"or write a working version from {self.kind_dir(kind)} into {self.kind_dir(kind) / 'current'}; "
            "the daemon picks up either at its next forecast run"
        )
        extra = {"kind": kind, "model_path": str(state.path) if state.path else None}
        if state.fallback:
            log.warning(
                "model %s: the promoted model cannot be loaded, so %s is scored with the shipped model %s "
                "instead (the promoted bundle is left as it is): %s; %s",
                kind, kind, state.version, state.problem, fix, extra=extra,
            )  # fmt: skip
        elif state.problem:
            log.error("model %s cannot be used, %s is NOT scored: %s; %s", kind, kind, state.problem, fix, extra=extra)
        elif before is not None and before.problem:
            log.info("model %s: fixed, %s bundle %s in use", kind, state.source, state.version, extra=extra)

    def states(self) -> list[ModelState]:
        """Every configured kind's state as of the last refresh (kinds never refreshed are left out)."""
        snapshot = dict(self._states)
        return [snapshot[k] for k in self.kinds if k in snapshot]

    def current(self, kind: str) -> Bundle | None:
        state = self._states.get(kind)
        return state.bundle if state else None

    def current_path(self, kind: str) -> Path | None:
        """The directory of the bundle in use once refreshed (retrain fine-tunes from it), else the registry's."""
        state = self._states.get(kind)
        return state.path if state else super().current_path(kind)

    def describe(self) -> str:
        """e.g. "disk 20261129T120000Z, host none"."""
        return ", ".join(f"{s.kind} {s.version or 'none'}" for s in self.states())

    def any(self) -> bool:
        return any(s.usable for s in self._states.values())


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
