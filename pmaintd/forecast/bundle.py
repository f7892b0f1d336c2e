"""Model bundles (a directory: LightGBM text model + bundle.json, no pickles) and the per-kind registry.

Registry layout under the state dir: `models/<kind>/<version>/` holds every trained bundle, and
`models/<kind>/current` is a one-line text file naming the promoted version. It is replaced atomically, so a
daemon that polls its mtime (or reloads on SIGHUP) picks up a promotion without a restart. With no promoted
version the shipped bundle (`pmaintd.resources.shipped("models", kind)`) is used.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from pmaintd.forecast.features import FEATURE_SPEC_VERSION
from pmaintd.forecast.groups import GroupTable
from pmaintd.resources import shipped_path

BUNDLE_FORMAT = 1


class BundleError(Exception):
    """A bundle is missing, incomplete, or was built for another feature-spec version."""


@dataclass
class Bundle:
    """A trained model and everything needed to use it honestly."""

    booster: lgb.Booster
    kind: str
    features: list[str]
    threshold: float
    horizon_hours: float
    calibration: dict[str, float]
    """Platt scaling of the raw margin: p = 1 / (1 + exp(-(a * margin + b)))."""
    version: str
    feature_spec_version: int = FEATURE_SPEC_VERSION
    training_window: dict[str, str] = field(default_factory=dict)
    data_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    extra: dict[str, Any] = field(default_factory=dict)
    groups: GroupTable | None = None
    """Per-group (disk model) risk and counter levels learned on the training drives; applied by `matrix`."""

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The float32 feature matrix in the bundle's column order (missing columns are NaN)."""
        if self.groups is not None:
            frame = self.groups.apply(frame)
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            frame = frame.with_columns(pl.lit(None, pl.Float32).alias(m) for m in missing)
        return frame.select(self.features).to_numpy().astype(np.float32, copy=False)

    def margin(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=2), dtype=np.float64)

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        a, b = self.calibration["a"], self.calibration["b"]
        return 1.0 / (1.0 + np.exp(-(a * margin + b)))

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated P(failure within horizon) for each feature row."""
        if frame.height == 0:
            return np.zeros(0)
        return self.calibrate(self.margin(self.matrix(frame)))

    def meta(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "kind": self.kind,
            "version": self.version,
            "created": self.created,
            "feature_spec_version": self.feature_spec_version,
            "features": self.features,
            "threshold": self.threshold,
            "horizon_hours": self.horizon_hours,
            "calibration": self.calibration,
            "training_window": self.training_window,
            "data_hash": self.data_hash,
            "metrics": self.metrics,
            **({"extra": self.extra} if self.extra else {}),
            **({"groups": self.groups.to_json()} if self.groups is not None else {}),
        }

    def save(self, directory: Path) -> Path:
        """Write model.txt and bundle.json into `directory` (created; written via temp names, then renamed)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp_model, tmp_meta = d / ".model.txt.tmp", d / ".bundle.json.tmp"
        self.booster.save_model(str(tmp_model))
        tmp_meta.write_text(json.dumps(self.meta(), indent=2, sort_keys=False) + "\n")
        os.replace(tmp_model, d / "model.txt")
        os.replace(tmp_meta, d / "bundle.json")
        return d


def load(directory: Path) -> Bundle:
    """Load a bundle; refuse one whose feature-spec version differs from this pmaintd's."""
    d = Path(directory)
    meta_path, model_path = d / "bundle.json", d / "model.txt"
    if not meta_path.is_file() or not model_path.is_file():
        raise BundleError(f"{d} is not a model bundle (needs bundle.json and model.txt)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: not valid JSON: {exc}") from None
    if meta.get("feature_spec_version") != FEATURE_SPEC_VERSION:
        raise BundleError(
            f"{d}: built for feature-spec version {meta.get('feature_spec_version')}, this pmaintd computes "
            f"version {FEATURE_SPEC_VERSION}; retrain it (pmaintd retrain --kind {meta.get('kind')})"
        )
    booster = lgb.Booster(model_file=str(model_path))
    return Bundle(
        booster=booster,
        kind=meta["kind"],
        features=list(meta["features"]),
        threshold=float(meta["threshold"]),
        horizon_hours=float(meta["horizon_hours"]),
        calibration={k: float(v) for k, v in meta["calibration"].items()},
        version=str(meta["version"]),
        feature_spec_version=int(meta["feature_spec_version"]),
        training_window=dict(meta.get("training_window") or {}),
        data_hash=str(meta.get("data_hash", "")),
        metrics=dict(meta.get("metrics") or {}),
        created=str(meta.get("created", "")),
        extra=dict(meta.get("extra") or {}),
        groups=GroupTable.from_json(meta["groups"]) if meta.get("groups") else None,
    )


def new_version() -> str:
    """Sortable, unique enough for one host: UTC timestamp with microseconds."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


class Registry:
    """Bundles per kind under `<state>/models/<kind>/`, with a `current` pointer and the shipped fallback."""

    def __init__(self, state_dir: Path, shipped_root: Path | None = None) -> None:
        self.root = Path(state_dir) / "models"
        self.shipped_root = shipped_root

    def _shipped(self, kind: str) -> Path:
        return self.shipped_root / kind if self.shipped_root else shipped_path("models", kind)

    def kind_dir(self, kind: str) -> Path:
        return self.root / kind

    def versions(self, kind: str) -> list[str]:
        d = self.kind_dir(kind)
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if (p / "bundle.json").is_file())

    def current_version(self, kind: str) -> str | None:
        p = self.kind_dir(kind) / "current"
        return p.read_text().strip() or None if p.is_file() else None

    def current_path(self, kind: str) -> Path | None:
        """The promoted bundle's directory, else the shipped one, else None when neither exists."""
        v = self.current_version(kind)
        if v and (self.kind_dir(kind) / v / "bundle.json").is_file():
            return self.kind_dir(kind) / v
        s = self._shipped(kind)
        return s if (s / "bundle.json").is_file() else None

    def current(self, kind: str) -> Bundle | None:
        p = self.current_path(kind)
        return load(p) if p else None

    def add(self, bundle: Bundle) -> Path:
        """Store a bundle under its version (not promoted)."""
        return bundle.save(self.kind_dir(bundle.kind) / bundle.version)

    def promote(self, kind: str, version: str) -> None:
        """Make `version` current by atomically replacing the pointer file."""
        if version not in self.versions(kind):
            raise BundleError(f"no {kind} model version {version} under {self.kind_dir(kind)}")
        tmp = self.kind_dir(kind) / ".current.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.kind_dir(kind) / "current")

    def copy_in(self, kind: str, src: Path, version: str) -> Path:
        """Copy an existing bundle directory into the registry (e.g. the shipped one, to keep history)."""
        dst = self.kind_dir(kind) / version
        if not dst.exists():
            shutil.copytree(src, dst)
        return dst
