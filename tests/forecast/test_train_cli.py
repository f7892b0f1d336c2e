"""`pmaintd train disk`: cross-validation and the time-disjoint check from the command line, on real samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.forecast.conftest import HDS, HISTORIES

PMAINTD = Path(sys.executable).parent / "pmaintd"


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PMAINTD_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin", "PMAINTD_CONFIG": "/dev/null"}
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
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("bundle.json"))


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
