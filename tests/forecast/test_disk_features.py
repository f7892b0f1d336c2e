"""The one feature function: no feature sees past its scoring time, on real Backblaze rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import polars as pl
from polars.testing import assert_frame_equal

from pmaintd.forecast import backblaze
from pmaintd.forecast.features import DISK_SPEC, build_features, feature_names, peer_stats, resample
from tests.forecast.conftest import DAILY_2013, HDS

PEERS = replace(DISK_SPEC, peer=("smart_5_raw", "smart_197_raw", "err_sum", "smart_9_raw"))
"""The disk spec plus same-day peer-relative columns (the shipped spec has none; see features.DISK_SPEC)."""


def test_truncating_the_future_never_changes_earlier_features() -> None:
    raw = backblaze.read_backblaze([HDS, DAILY_2013])
    cut = date(2014, 6, 1)
    full = build_features(raw, PEERS)
    early = build_features(raw.filter(pl.col("date") < cut), PEERS)
    cut_t = pl.lit(cut).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    assert early.height > 1000
    assert_frame_equal(full.filter(pl.col("date") < cut_t), early)


def test_chunked_entities_with_fleet_peers_equal_the_whole_frame() -> None:
    """What the backtest relies on to stream: features of a subset of drives, given the fleet's peer stats,
    are those of the whole input."""
    raw = backblaze.read_backblaze([HDS])
    peers = peer_stats(resample(raw, PEERS), PEERS)
    full = build_features(raw, PEERS)
    assert full["err_sum__peer"].null_count() < full.height
    some = raw["serial_number"].unique().sort()[:37]
    part = build_features(raw.filter(pl.col("serial_number").is_in(some.implode())), PEERS, peers=peers)
    assert_frame_equal(full.filter(pl.col("serial_number").is_in(some.implode())), part)


def test_output_columns_are_the_ordered_feature_list_and_windows_stay_within_a_drive() -> None:
    raw = backblaze.read_backblaze([HDS])
    feats = build_features(raw, DISK_SPEC)
    assert feats.columns == ["serial_number", "date", "model", *feature_names(DISK_SPEC)]
    assert feats.height == raw.height
    # A drive's first row has no history: growth over any window is 0, never another drive's difference.
    first = feats.group_by("serial_number").agg(pl.all().first())
    assert (first["smart_5_raw__growth_30"].drop_nulls() == 0).all()
    assert (first["err_sum__incsteps_30"].drop_nulls() == 0).all()


def test_resample_takes_the_last_value_per_step_and_adds_missing_columns() -> None:
    df = pl.DataFrame({
        "serial_number": ["A", "A", "A"],
        "model": ["m", "m", "m"],
        "date": ["2016-01-01T01:00:00", "2016-01-01T23:00:00", "2016-01-03T00:00:00"],
        "smart_5_raw": [1.0, 4.0, 9.0],
    }).with_columns(pl.col("date").str.to_datetime())
    r = resample(df, DISK_SPEC)
    assert r["smart_5_raw"].to_list() == [4.0, 9.0]
    assert r["smart_197_raw"].null_count() == 2
    f = build_features(df, DISK_SPEC)
    # growth over 3 days at 2016-01-03 sees 2016-01-01 (4 -> 9); over 1 day it sees only itself.
    assert f["smart_5_raw__growth_3"].to_list() == [0.0, 5.0]
    assert f["smart_5_raw__growth_1"].to_list() == [0.0, 0.0]
    assert f["smart_5_raw__incsteps_3"].to_list() == [0.0, 1.0]


def test_chunk_size_never_changes_features() -> None:
    raw = backblaze.read_backblaze([HDS])
    assert_frame_equal(build_features(raw, PEERS, chunk_rows=1_000), build_features(raw, PEERS))
