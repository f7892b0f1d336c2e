"""Fixtures for the disk forecasting tests: real Backblaze samples (testdata/backblaze) and one small real
LightGBM bundle trained on them, shared by the session so the suite trains it once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmaintd.forecast.bundle import Bundle
from pmaintd.forecast.disk import train_from_backblaze
from pmaintd.forecast.train import TrainOptions

SAMPLES = Path(__file__).resolve().parent / "testdata" / "backblaze"
HDS = SAMPLES / "hds_daily_last120_sample.csv.gz"
DAILY_2013 = SAMPLES / "daily_2013_sample.csv.gz"
HISTORIES = SAMPLES / "hds_startstop_sample.csv.gz"

SMALL = TrainOptions(
    fractions=(0.6, 0.2, 0.2), rounds=120, early_stopping=30, min_data_in_leaf=20, negative_rate=0.5,
    learning_rate=0.1,
)
"""Options sized for 400 drives: enough to learn, seconds to train."""


@pytest.fixture(scope="session")
def disk_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "disk"
    train_from_backblaze([HDS], out, SMALL, baselines=False, log=lambda _m: None, history_paths=[HISTORIES])
    return out


@pytest.fixture(scope="session")
def disk_bundle(disk_bundle_dir: Path) -> Bundle:
    from pmaintd.forecast.bundle import load

    return load(disk_bundle_dir)
