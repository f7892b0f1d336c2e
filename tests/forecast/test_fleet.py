"""Host and network kinds on a simulated fleet: inputs from the store, no look-ahead, a model that alarms ahead.

The simulator's precursors are strong by construction, so this checks the plumbing end to end (store ->
inputs -> features -> labels -> LightGBM), not accuracy.
"""

from __future__ import annotations

import polars as pl
import pytest

from pmaintd.forecast.features import FeatureSpec, build_features
from pmaintd.forecast.fleet import HOST_SPEC, KINDS, NETWORK_SPEC, anomaly_points
from pmaintd.forecast.labels import Incident
from pmaintd.forecast.sources import labeled_live
from pmaintd.forecast.train import TrainOptions, fit
from pmaintd.simulate import NS, FleetSpec, simulate
from pmaintd.store.sqlite import SqliteStore

START = 1_700_000_000 * NS
SPEC = FleetSpec(
    hosts=80, disks_per_host=1, days=8, step_s=3600, seed=11, host_failure_fraction=0.3, link_failure_fraction=0.3
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[SqliteStore, list[Incident]]:
    store = SqliteStore(tmp_path_factory.mktemp("fleet") / "s.db", retention_s=10 * 365 * 86400)
    batches, failures = simulate(SPEC, START)
    for b in batches:
        store.write(b)
    return store, failures


def test_inputs_cover_every_entity(fleet: tuple[SqliteStore, list[Incident]]) -> None:
    store, incidents = fleet
    hosts = KINDS["host"].frame(store, None, None)
    links = KINDS["network"].frame(store, None, None)
    assert hosts["host"].n_unique() == SPEC.hosts
    assert links["link"].n_unique() == SPEC.hosts
    assert hosts["edac_ce"].null_count() == 0 and hosts["mem_used_percent"].null_count() == 0
    assert links["rx_dbm"].null_count() == 0
    assert hosts["diskio_io_time"].drop_nulls().len() > 0
    assert links["in_error_ratio"].drop_nulls().is_between(0, 1).all()
    # A link that failed flapped once (down), and its ifLastChange moved with it: counted once, not twice.
    failed = {i.entity for i in incidents if i.kind == "network"}
    flaps = links.group_by("link").agg(pl.col("flaps").max())
    assert set(flaps.filter(pl.col("flaps") == 1)["link"]) == failed
    assert flaps.filter(~pl.col("link").is_in(list(failed)))["flaps"].max() == 0
    assert hosts["anomaly"].drop_nulls().len() > 0


@pytest.mark.parametrize("kind", ["host", "network"])
def test_features_never_see_the_future(fleet: tuple[SqliteStore, list[Incident]], kind: str) -> None:
    store, _ = fleet
    k = KINDS[kind]
    cut = START + 5 * 86400 * NS
    full = build_features(k.frame(store, None, None), k.spec)
    early = build_features(k.frame(store, None, cut), k.spec)
    # The step that contains the cut is incomplete in `early`; every earlier step must be identical.
    last_full_step = pl.lit((cut // 1000) - 3600 * 10**6).cast(pl.Datetime("us", "UTC"))
    a = full.filter(pl.col(k.spec.time) < last_full_step).sort(k.spec.entity, k.spec.time)
    b = early.filter(pl.col(k.spec.time) < last_full_step).sort(k.spec.entity, k.spec.time)
    assert a.height > 0
    assert a.equals(b)


@pytest.mark.parametrize(("kind", "spec"), [("host", HOST_SPEC), ("network", NETWORK_SPEC)])
def test_model_alarms_ahead_of_simulated_failures(
    fleet: tuple[SqliteStore, list[Incident]], kind: str, spec: FeatureSpec
) -> None:
    store, incidents = fleet
    labeled = labeled_live(KINDS[kind].frame(store, None, None), spec, incidents, 24)
    assert labeled["label"].sum() > 0
    bundle, _ = fit(
        labeled,
        spec,
        TrainOptions(
            horizon_hours=24,
            min_data_in_leaf=20,
            rounds=200,
            negative_rate=1.0,
            far_budget=0.05,
            early_stopping=30,
            fractions=(0.6, 0.2, 0.2),
        ),
    )
    test = bundle.metrics["test"]
    assert test["entities_failed"] >= 2
    assert test["recall_at_threshold"] >= 0.5
    assert test["far_at_threshold"] <= 0.1
    assert test["median_lead_hours_at_threshold"] >= 6


def test_anomaly_points_score_every_entity_and_flag_precursors(fleet: tuple[SqliteStore, list[Incident]]) -> None:
    store, incidents = fleet
    # Just before a host dies of a memory leak, it is among the fleet's most anomalous hosts: the leak is
    # unlike its own history, whatever the model has learned.
    oom = min((i for i in incidents if i.kind == "host" and i.cause == "oom"), key=lambda i: i.time)
    pts = anomaly_points(store, oom.time - 1)
    hosts = {p.tags["entity"]: p.fields["score"] for p in pts if p.tags["kind"] == "host"}
    links = [p for p in pts if p.tags["kind"] == "network"]
    assert all(p.measurement == "pmaintd_anomaly" and p.time < oom.time for p in pts)
    alive = {f"sim-host-{i:03d}" for i in range(SPEC.hosts)} - {
        i.entity for i in incidents if i.kind == "host" and i.time < oom.time
    }
    assert set(hosts) == alive and len(links) == SPEC.hosts
    top = sorted(hosts, key=hosts.__getitem__, reverse=True)[:3]
    assert oom.entity in top
    assert hosts[oom.entity] > 3 * sorted(hosts.values())[len(hosts) // 2]
