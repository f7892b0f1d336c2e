"""Training, calibration, threshold, bundles and explanations with real LightGBM on real Backblaze drives."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pmaintd.forecast import backblaze
from pmaintd.forecast.bundle import Bundle, BundleError, Registry, load
from pmaintd.forecast.disk import labeled_from_frame, train_job
from pmaintd.forecast.evaluate import entity_maxima, threshold_for_far
from pmaintd.forecast.explain import top_contributions
from pmaintd.forecast.features import DISK_SPEC, FEATURE_SPEC_VERSION, build_features
from pmaintd.forecast.train import TrainOptions, assign_parts, fit, train_in_subprocess
from tests.forecast.conftest import HDS, SMALL


@pytest.fixture(scope="module")
def labeled() -> pl.DataFrame:
    return labeled_from_frame(backblaze.read_backblaze([HDS]), 168)


def test_bundle_round_trip_without_pickles(disk_bundle: Bundle, tmp_path: Path, labeled: pl.DataFrame) -> None:
    disk_bundle.save(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["bundle.json", "model.txt"]
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    for key in ("features", "feature_spec_version", "threshold", "horizon_hours", "kind", "training_window",
                "data_hash", "metrics", "created", "version", "calibration"):
        assert key in meta
    assert meta["feature_spec_version"] == FEATURE_SPEC_VERSION and meta["horizon_hours"] == 168
    again = load(tmp_path / "b")
    rows = labeled.head(500)
    np.testing.assert_allclose(again.predict(rows), disk_bundle.predict(rows), rtol=1e-12)


def test_bundle_of_another_feature_spec_version_is_refused(disk_bundle: Bundle, tmp_path: Path) -> None:
    old = replace(disk_bundle, feature_spec_version=FEATURE_SPEC_VERSION - 1)
    old.save(tmp_path / "old")
    with pytest.raises(BundleError, match="feature-spec version"):
        load(tmp_path / "old")
    with pytest.raises(BundleError, match="not a model bundle"):
        load(tmp_path)


def test_calibration_is_monotone_and_probabilities_bounded(disk_bundle: Bundle, labeled: pl.DataFrame) -> None:
    assert disk_bundle.calibration["a"] > 0
    m = np.linspace(-6, 6, 121)
    p = disk_bundle.calibrate(m)
    assert np.all(np.diff(p) > 0) and p.min() > 0 and p.max() < 1
    # On real rows: ordering by probability is ordering by the model's margin (ranking is never changed).
    x = disk_bundle.matrix(labeled.head(5000))
    margin, prob = disk_bundle.margin(x), disk_bundle.calibrate(disk_bundle.margin(x))
    order = np.argsort(margin, kind="stable")
    assert np.all(np.diff(prob[order]) >= 0)


def test_threshold_meets_the_far_budget_on_its_calibration_drives(disk_bundle: Bundle, labeled: pl.DataFrame) -> None:
    calib = assign_parts(labeled, "serial_number", SMALL).filter(pl.col("part") == "calib")
    scored = calib.select("serial_number", "date", "failure_time").with_columns(
        pl.Series("score", disk_bundle.predict(calib))
    )
    per = entity_maxima(scored, "serial_number", "date", 168)
    healthy = per.filter(~pl.col("failed"))["max_score"].to_numpy()
    assert len(healthy) > 30
    assert np.mean(healthy >= disk_bundle.threshold) <= SMALL.far_budget * SMALL.far_margin
    assert disk_bundle.metrics["calib"]["far_at_threshold"] <= SMALL.far_budget
    failed = per.filter(pl.col("failed"))["max_score"].to_numpy()
    assert failed.mean() > healthy.mean()  # the model learned something on drives of its calibration part


def test_threshold_for_far_counts_ties_as_alarms() -> None:
    s = np.array([0.9, 0.9, 0.5, 0.4] + [0.1] * 96)
    t = threshold_for_far(s, 0.01)  # at most 1 of 100 may alarm; the two 0.9s tie, so neither may
    assert t > 0.9 and np.sum(s >= t) == 0
    t3 = threshold_for_far(s, 0.03)  # 3 may alarm: midway between the 3rd (0.5) and 4th (0.4) largest
    assert t3 == 0.45 and np.sum(s >= t3) == 3


def test_a_deployed_threshold_keeps_every_caught_failure_with_the_fewest_healthy_alarms() -> None:
    """With the failed entities' scores, the threshold catches what the lowest budget-keeping threshold catches,
    and sits midway between the lowest caught failure and the highest healthy score below it."""
    # 11 healthy at a 5% budget: none may alarm. The old edge (just above 6.8e-5) let an unseen host at
    # 0.017 alarm; midway to the lowest caught failure (0.3) it does not.
    healthy = np.array([0.000068] * 11)
    failed = np.array([0.79, 0.54, 0.3, 0.00001])
    t = threshold_for_far(healthy, 0.05, failed)
    assert t == (0.000068 + 0.3) / 2 and np.sum(healthy >= t) == 0 and np.sum(failed >= t) == 3
    assert threshold_for_far(healthy, 0.05) == np.nextafter(0.000068, 1)  # without them: the old edge
    # 3 of 100 may alarm (0.9, 0.9, 0.5 would); the lowest caught failure is 0.95, so no healthy need alarm.
    s = np.array([0.9, 0.9, 0.5, 0.4] + [0.1] * 96)
    assert threshold_for_far(s, 0.03, np.array([0.95, 0.2])) == pytest.approx(0.925)
    # A failure at 0.42 between the 4th (0.4) and 3rd (0.5) healthy: caught, so the 0.9s and 0.5 still alarm.
    t = threshold_for_far(s, 0.03, np.array([0.42, 0.95]))
    assert t == pytest.approx(0.41) and np.sum(s >= t) == 3


def test_explanations_add_up_to_the_margin_and_carry_feature_values(disk_bundle: Bundle) -> None:
    feats = build_features(backblaze.read_backblaze([HDS]), DISK_SPEC).tail(50)
    reasons = top_contributions(disk_bundle, feats, n=5)
    assert len(reasons) == 50
    x = disk_bundle.matrix(feats)
    contrib = disk_bundle.booster.predict(x, pred_contrib=True)
    np.testing.assert_allclose(contrib.sum(axis=1), disk_bundle.margin(x), rtol=1e-6, atol=1e-6)
    for i, rs in enumerate(reasons):
        mags = [abs(r["contribution"]) for r in rs]
        assert mags == sorted(mags, reverse=True) and len(rs) <= 5
        for r in rs:
            j = disk_bundle.features.index(r["feature"])
            v = float(x[i, j])
            assert (r["value"] is None and np.isnan(v)) or r["value"] == pytest.approx(v)


def test_training_runs_in_a_spawned_process(tmp_path: Path) -> None:
    version = train_in_subprocess(train_job, [HDS], tmp_path / "sub", SMALL)
    b = load(tmp_path / "sub")
    assert b.version == version and b.threshold < 1.0


def test_registry_falls_back_to_shipped_and_promotes_atomically(disk_bundle: Bundle, tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    disk_bundle.save(shipped / "disk")
    reg = Registry(tmp_path / "state", shipped_root=shipped)
    assert reg.current_path("disk") == shipped / "disk" and reg.current_version("disk") is None
    b2 = replace(disk_bundle, version="20990101T000000000000Z")
    reg.add(b2)
    assert reg.current_path("disk") == shipped / "disk"  # added, not promoted
    reg.promote("disk", b2.version)
    assert (reg.kind_dir("disk") / "current").read_text().strip() == b2.version
    assert reg.current("disk").version == b2.version
    with pytest.raises(BundleError):
        reg.promote("disk", "nope")


def test_a_model_seed_redraws_the_training_but_keeps_the_split(labeled: pl.DataFrame) -> None:
    """`--seed` measures chance: it must change the negatives drawn and LightGBM's randomness, never which
    drives are tested (else seed and split noise could not be told apart)."""
    def run(opts: TrainOptions) -> tuple[str, set[str], dict[str, int]]:
        bundle, test = fit(labeled, DISK_SPEC, opts)
        calib = {k: bundle.metrics["calib"][k] for k in ("entities_failed", "entities_healthy")}
        return bundle.booster.model_to_string(), set(test["serial_number"].unique()), calib

    base = run(SMALL)
    same = run(replace(SMALL, model_seed=SMALL.seed))
    other = run(replace(SMALL, model_seed=SMALL.seed + 1))
    assert same == base  # the default seed, spelled out, is the same run
    assert other[1:] == base[1:]  # the same test and calibration drives
    assert other[0] != base[0]  # other trees
