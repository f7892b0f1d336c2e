"""Per-model risk and healthy counter levels (forecast.groups), learned on real Backblaze drives."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from pmaintd.forecast import backblaze
from pmaintd.forecast.bundle import Bundle
from pmaintd.forecast.disk import labeled_from_frame
from pmaintd.forecast.features import DISK_SPEC
from pmaintd.forecast.groups import MIN_ENTITIES, RISK, GroupTable, group_key, rel_name
from pmaintd.forecast.train import assign_parts
from tests.forecast.conftest import HDS, SMALL


@pytest.fixture(scope="module")
def labeled() -> pl.DataFrame:
    return labeled_from_frame(backblaze.read_backblaze([HDS]), 168)


@pytest.fixture(scope="module")
def table(labeled: pl.DataFrame) -> GroupTable:
    return GroupTable.fit(labeled, DISK_SPEC.entity, "model", DISK_SPEC.group_relative)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("ST4000DM000-1F2168", "ST4000DM000"),  # smartctl's Device Model vs Backblaze's model column
        ("WDC WD30EFRX-68EUZN0", "WDC WD30EFRX"),
        ("  hgst   HMS5C4040BLE640 ", "HGST HMS5C4040BLE640"),
        ("ST4000DM000", "ST4000DM000"),
        (None, ""),
    ],
)
def test_group_key_matches_smartctl_and_backblaze_spellings(raw: str | None, key: str) -> None:
    assert pl.select(group_key(pl.lit(raw, pl.Utf8))).item() == key


def test_riskier_models_get_higher_risk(labeled: pl.DataFrame, table: GroupTable) -> None:
    per = labeled.group_by("serial_number").agg(pl.col("model").first(), pl.col("failure_time").first().is_not_null())
    rates = per.group_by("model").agg(pl.len(), pl.col("failure_time").mean().alias("rate")).filter(pl.col("len") >= 30)
    rates = rates.with_columns(pl.col("model").map_elements(table.risk.__getitem__, return_dtype=pl.Float64).alias("r"))
    assert rates.height >= 3
    # Smoothing shrinks but never reorders models with the same number of drives; across sizes, the order of
    # risk follows the order of the observed failure rate for these well-populated models.
    order_rate = rates.sort("rate")["model"].to_list()
    order_risk = rates.sort("r")["model"].to_list()
    assert order_rate[0] == order_risk[0] and order_rate[-1] == order_risk[-1]
    n, f = map(sum, zip(*table.entities.values(), strict=True))
    assert (n, f) == (per.height, int(per["failure_time"].sum()))


def test_unknown_and_small_models_get_the_fleet_values(labeled: pl.DataFrame, table: GroupTable) -> None:
    rows = labeled.filter(pl.col("smart_5_raw__last") > 0).head(3)
    unknown = table.apply(rows.with_columns(pl.lit("ACME NEWDRIVE 9000").alias("model")))
    assert unknown[RISK].to_list() == [0.0, 0.0, 0.0]
    expect = np.log1p(rows["smart_5_raw__last"].to_numpy()) - table.fleet_level["smart_5_raw"]
    np.testing.assert_allclose(unknown[rel_name("smart_5_raw")].to_numpy(), expect, rtol=1e-6)
    healthy = labeled.filter(pl.col("failure_time").is_null()).group_by("model").agg(pl.col("serial_number").n_unique())
    small = healthy.filter(pl.col("serial_number") < MIN_ENTITIES)["model"].to_list()
    assert small and all(pl.select(group_key(pl.lit(m))).item() not in table.level["err_sum"] for m in small)


def test_apply_is_row_wise_and_survives_json(labeled: pl.DataFrame, table: GroupTable) -> None:
    whole = table.apply(labeled)
    part = table.apply(labeled.slice(1000, 200))
    assert part.select(table.feature_names()).equals(whole.slice(1000, 200).select(table.feature_names()))
    again = GroupTable.from_json(json.loads(json.dumps(table.to_json())))
    assert again.apply(labeled.slice(1000, 200)).equals(part)


def test_bundle_learns_the_table_from_train_drives_only(disk_bundle: Bundle, labeled: pl.DataFrame) -> None:
    assert disk_bundle.groups is not None
    assert disk_bundle.features[-len(disk_bundle.groups.feature_names()):] == disk_bundle.groups.feature_names()
    parts = assign_parts(labeled, "serial_number", SMALL).group_by("part").agg(pl.col("serial_number").n_unique())
    train_drives = dict(parts.iter_rows())["train"]
    assert sum(n for n, _f in disk_bundle.groups.entities.values()) == train_drives
    # Scoring a row of an unseen model works and treats it as an average drive.
    row = labeled.head(1).with_columns(pl.lit("ACME NEWDRIVE 9000").alias("model"))
    assert 0.0 < float(disk_bundle.predict(row)[0]) < 1.0
