"""Retraining from the store: a champion is fine-tuned (LightGBM init_model) when local failures are few, and an
operator's false-alarm marks become heavier negatives. Real LightGBM on a simulated fleet in sqlite."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pmaintd.forecast import incidents as inc
from pmaintd.forecast.bundle import Registry, load
from pmaintd.forecast.labels import Incident
from pmaintd.forecast.retrain import retrain
from pmaintd.forecast.sources import FALSE_ALARM_WEIGHT, RetrainDataError, labeled_for_retrain
from pmaintd.forecast.train import TrainOptions
from pmaintd.simulate import NS, FleetSpec, simulate
from pmaintd.store.sqlite import SqliteStore

START = 1_700_000_000 * NS
SPEC = FleetSpec(hosts=80, disks_per_host=1, days=8, step_s=3600, seed=11, host_failure_fraction=0.3)
OPTS = TrainOptions(
    horizon_hours=24,
    min_data_in_leaf=20,
    rounds=60,
    negative_rate=1.0,
    far_budget=0.1,
    early_stopping=20,
    fractions=(0.6, 0.2, 0.2),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SqliteStore:
    st = SqliteStore(tmp_path_factory.mktemp("feedback") / "s.db", retention_s=10 * 365 * 86400)
    batches, failures = simulate(SPEC, START)
    for b in batches:
        st.write(b)
    inc.record(st, failures, "simulator")
    return st


def test_second_retrain_fine_tunes_the_champion(store: SqliteStore, tmp_path: Path) -> None:
    """Eight days of history and the default 30-day recent window: the window is cut to the later half."""
    labeled, spec, _ = labeled_for_retrain("host", store, [], [], 24)
    reg = Registry(tmp_path / "state", shipped_root=tmp_path / "none")
    first = retrain("host", labeled, spec, reg, OPTS, 30 * 86400, finetune_below_failures=0)
    assert first.promoted and not first.finetuned
    champion_trees = reg.current("host").booster.num_trees()
    second = retrain("host", labeled, spec, reg, OPTS, 30 * 86400, finetune_below_failures=10_000)
    assert second.finetuned
    tuned = load(reg.kind_dir("host") / second.challenger_version)
    assert tuned.booster.num_trees() > champion_trees  # it continued from the champion's trees


def test_false_alarm_marks_weigh_the_rows_before_them(store: SqliteStore) -> None:
    labeled, _spec, _ = labeled_for_retrain("host", store, [], [], 24)
    assert "weight" not in labeled.columns  # no marks, no weights: training is unchanged
    healthy = labeled.filter(pl.col("failure_time").is_null())["host"][0]
    mark_time = int(labeled.filter(pl.col("host") == healthy)["time"].max().timestamp()) * NS
    inc.record(store, [Incident(mark_time, "host", healthy, "alarm was wrong")], "operator", inc.FALSE_ALARM)
    weighted, _spec, _ = labeled_for_retrain("host", store, [], [], 24)
    heavy = weighted.filter(pl.col("weight") > 1)
    assert set(heavy["host"]) == {healthy}
    assert heavy.height == 24 and (heavy["label"] == 0).all()  # the horizon before the mark, hourly steps
    assert heavy["weight"].unique().to_list() == [FALSE_ALARM_WEIGHT]


def test_a_store_younger_than_the_horizon_is_refused_with_why(tmp_path: Path) -> None:
    """Twenty hours of telemetry and a 24-hour horizon, no failure yet: no row's outcome is known, and the
    error says so instead of calling the store empty."""
    st = SqliteStore(tmp_path / "young.db", retention_s=10 * 365 * 86400)
    young = FleetSpec(hosts=6, disks_per_host=1, days=20 / 24, step_s=3600, seed=1,
                      host_failure_fraction=0.0, link_failure_fraction=0.0, disk_failure_fraction=0.0)
    batches, failures = simulate(young, START)
    assert not failures
    for b in batches:
        st.write(b)
    for kind, horizon in (("host", 24), ("disk", 168)):
        with pytest.raises(RetrainDataError, match=r"all from the last \d+ hours .* not known yet"):
            labeled_for_retrain(kind, st, [], [], horizon)
    st.close()


def test_a_young_store_with_failures_but_no_known_healthy_row_is_refused_with_why(tmp_path: Path) -> None:
    """Twenty hours, half the hosts fail: every row is a positive or not labeled yet. LightGBM would stop on
    a one-class Dataset with an error about `min_data_in_leaf`; retrain says what is missing instead."""
    st = SqliteStore(tmp_path / "young.db", retention_s=10 * 365 * 86400)
    batches, failures = simulate(FleetSpec(hosts=40, disks_per_host=1, days=20 / 24, step_s=3600, seed=1,
                                           host_failure_fraction=0.5), START)
    for b in batches:
        st.write(b)
    inc.record(st, failures, "simulator")
    with pytest.raises(RetrainDataError, match="no host row is known to be healthy yet"):
        labeled_for_retrain("host", st, [], [], 24)
    st.close()
