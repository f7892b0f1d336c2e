"""`pmaintd train disk`: cross-validation and the time-disjoint check from the command line, on real samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.forecast.conftest import HDS, HISTORIES

PMAINTD = Path(sys.executable).parent / "pmaintd"


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PMAINTD_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin", "PMAINTD_CONFIG": "/dev/null",
           "COLUMNS": "80"}
    return subprocess.run(
        [str(PMAINTD), "train", "disk", "--backblaze", str(HDS), *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )


def test_folds_test_every_drive_once_and_print_figures(tmp_path: Path) -> None:
    r = _train(tmp_path, "--histories", str(HISTORIES), "--folds", "3")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["folds"] == 3 and len(out["per_fold"]) == 3
    failed = sum(f["model"]["entities_failed"] for f in out["per_fold"])
    healthy = sum(f["model"]["entities_healthy"] for f in out["per_fold"])
    assert (failed, healthy) == (80, 320)  # the sample's 80 failed and 320 healthy drives, each tested once
    assert 0.0 <= out["mean"]["model"]["recall_at_far_0.01"] <= 1.0
    # "In service" leaves out the healthy drives that left the data early, and only those.
    svc = [f["model_in_service"] for f in out["per_fold"]]
    assert sum(s["entities_healthy"] + s["healthy_retired"] for s in svc) == 320
    assert sum(s["entities_failed"] for s in svc) == 80 and sum(s["healthy_retired"] for s in svc) > 0
    # Every tested drive is either warned (a critical counter above zero in its window) or silent.
    w = out["model_by_warning_total"]
    assert (w["failed_warned"] + w["failed_silent"], w["healthy_warned"] + w["healthy_silent"]) == (80, 320)
    assert w["failed_warned"] > 0 and w["failed_silent_alarms_at_far_0.01"] <= w["failed_silent"]
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("bundle.json"))


def test_training_writes_a_bundle_and_prints_the_table_and_where_alarms_come_from(tmp_path: Path) -> None:
    r = _train(tmp_path, "--histories", str(HISTORIES), "--output", str(tmp_path / "m"), "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "model.txt").is_file()
    meta = json.loads((tmp_path / "m" / "bundle.json").read_text())
    assert meta["metrics"]["model_seed"] == 5 and meta["metrics"]["split"]["seed"] != 5
    w = meta["metrics"]["test_by_warning"]
    failed = meta["metrics"]["test"]["entities_failed"]
    assert w["failed_warned"] + w["failed_silent"] == failed
    assert "│ backblaze_rule_in_service │" in r.stdout  # names are never cut, even at 80 columns
    text = " ".join(r.stdout.split())  # the lines wrap at the terminal's width
    for name in ("model", "model_same_era", "model_in_service", "backblaze_rule", "plain_lightgbm"):
        assert f" {name} " in text
    assert "model_by_warning" not in text  # counts, not a row of recall figures
    assert (f"of {failed} failed test drives, {w['failed_silent']} showed no critical SMART counter "
            f"(5/187/188/197/198) above zero in their window") in text
    assert f"{w['healthy_warned']} healthy drives showed a warning" in text


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path) -> None:
    r = _train(tmp_path, "--output", str(tmp_path / "m"), "--valid-from", "last tuesday")
    assert r.returncode == 2 and "'last tuesday' is not an ISO date" in r.stderr
    r = _train(tmp_path)
    assert r.returncode == 2 and "give --output DIR (or --folds K" in r.stderr
    r = _train(tmp_path, "--folds", "2")
    assert r.returncode == 2 and "--folds" in r.stderr
    r = _train(tmp_path, "--output", str(tmp_path / "m"), "--histories", str(HDS))
    assert r.returncode == 2 and "not a start-stop history file" in r.stderr
    assert not (tmp_path / "m").exists()
