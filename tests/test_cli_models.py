"""`pmaintd forecast` and `pmaintd backtest` choose their model as the daemon does (pmaintd.forecasting's
LoadedModels): a promoted bundle that cannot be loaded gives way to the shipped one with the daemon's warning,
nothing loadable is the daemon's error, and a truncated model.txt (which kills a process that parses it with
LightGBM) is a reason, not a crash. A bundle named with `backtest --model` is used or refused, never replaced.

Real LightGBM bundles trained here on real Backblaze rows, broken the two ways an upgrade or a disk breaks them
(trained for feature-spec version 1; model.txt cut in half), over a real sqlite store of real drive histories.
The package's own shipped bundle is stale whenever the feature spec changes until it is retrained, so where a
loadable "shipped" model is needed the test brings its own: the command then runs as `python -c`, pointing
pmaintd.forecast.bundle.shipped_path at the test's directory before calling the console entry point. That is
still a process of its own, so a LightGBM crash shows as a signal exit here, not as a dead test run."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pmaintd.forecast.disk import train_from_backblaze
from pmaintd.forecast.scoring import Forecast
from tests.daemon.test_models import _bundle, _drives_in_store
from tests.forecast.conftest import DAILY_2013, HDS, SMALL
from tests.test_cli import PMAINTD

_WITH_SHIPPED = (
    "import sys; from pathlib import Path; import pmaintd.forecast.bundle as b; root = Path(sys.argv.pop(1)); "
    "b.shipped_path = lambda *parts: root.joinpath(*parts[1:]); from pmaintd.cli import main; main()"
)
STALE = "built for feature-spec version 1"
CRASHED = "is truncated or damaged: LightGBM crashed reading it"


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    """A command's outcome; a LightGBM crash dump on stderr is not UTF-8, and must fail the test readably."""
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=300, check=False)


def with_shipped(shipped: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pmaintd ARGS` with `shipped` as the package's shipped models directory."""
    return _run(sys.executable, "-c", _WITH_SHIPPED, str(shipped), *args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real disk model bundle trained on real Backblaze rows with this pmaintd's features."""
    out = tmp_path_factory.mktemp("trained") / "disk"
    train_from_backblaze([HDS], out, SMALL, baselines=False, log=lambda _m: None)
    return out


@pytest.fixture
def shipped(tmp_path: Path, trained: Path) -> tuple[Path, str]:
    """A shipped models directory holding a loadable disk bundle, and that bundle's version."""
    root = tmp_path / "shipped"
    shutil.copytree(trained, root / "disk")
    return root, json.loads((trained / "bundle.json").read_text())["version"]


def _config(tmp_path: Path) -> str:
    path = tmp_path / "pmaintd.toml"
    path.write_text('[forecast]\nkinds = ["disk"]\nmin_history = "1d"\n')
    return str(path)


def _lines(stderr: str, level: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(f"{level} ")]


def _break(trained: Path, state: Path, how: str) -> tuple[Path, str]:
    """A promoted disk bundle broken `how`, and the reason the daemon gives for it."""
    if how == "stale":
        d = _bundle(trained, state, "disk", "v-broken", spec=1)
        return d, f"{d}: {STALE}"
    d = _bundle(trained, state, "disk", "v-broken", truncate=True)
    return d, f"{d / 'model.txt'} {CRASHED}"


@pytest.mark.parametrize("how", ["stale", "truncated"])
def test_forecast_scores_with_the_shipped_model_when_the_promoted_one_is_broken(
    tmp_path: Path, trained: Path, shipped: tuple[Path, str], how: str
) -> None:
    """It used to stop with "model error" (stale) or die in LightGBM's parser (truncated); the daemon scores
    with the shipped model instead, and so does the command, saying so in the daemon's own warning line."""
    state = tmp_path / "state"
    serials = _drives_in_store(state)
    broken, reason = _break(trained, state, how)
    root, version = shipped
    r = with_shipped(root, "--config", _config(tmp_path), "--state-dir", str(state), "forecast", "--top", "100",
                     "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert sorted(o["entity"] for o in rows) == sorted(serials)
    assert {o["model_version"] for o in rows} == {version} and {o["model_source"] for o in rows} == {"shipped"}
    assert all(o["probability"] is not None for o in rows)
    extra = {"model_source", "anomaly", "anomaly_metric", "recurring_actions"}
    assert all(set(o) == set(Forecast.__dataclass_fields__) | extra for o in rows)
    (warning,) = _lines(r.stderr, "WARNING")
    assert warning.startswith(
        f"WARNING pmaintd.forecasting: model disk: the promoted model cannot be loaded, so disk is scored with the "
        f"shipped model {version} instead"
    ), r.stderr
    assert f"promoted bundle: {reason}" in warning and "run `pmaintd retrain --kind disk`" in warning
    assert not _lines(r.stderr, "ERROR") and "Traceback" not in r.stderr
    assert (broken / "model.txt").is_file()  # left for the operator to inspect


def test_forecast_with_no_usable_model_says_why_and_exits_1(tmp_path: Path, trained: Path) -> None:
    state = tmp_path / "state"
    _drives_in_store(state)
    _stale, reason = _break(trained, state, "stale")
    r = with_shipped(tmp_path / "nothing-shipped", "--config", _config(tmp_path), "--state-dir", str(state),
                     "forecast", "--json")  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout) == []
    (error,) = _lines(r.stderr, "ERROR")
    assert error.startswith(
        f"ERROR pmaintd.forecasting: model disk cannot be used, disk is NOT scored: promoted bundle: {reason}"
    )
    assert "run `pmaintd retrain --kind disk`" in error and "Traceback" not in r.stderr


def test_backtest_falls_back_from_a_truncated_promoted_model(
    tmp_path: Path, trained: Path, shipped: tuple[Path, str]
) -> None:
    state = tmp_path / "state"
    _broken, reason = _break(trained, state, "truncated")
    root, version = shipped
    out = tmp_path / "scores.csv"
    r = with_shipped(root, "--state-dir", str(state), "backtest", "disk", "--backblaze", str(DAILY_2013),
                     "--output", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"(model {version} from shipped {root / 'disk'}," in r.stdout
    (warning,) = _lines(r.stderr, "WARNING")
    assert f"shipped model {version} instead" in warning and f"promoted bundle: {reason}" in warning
    with gzip.open(DAILY_2013, "rt") as f:
        assert len(out.read_text().splitlines()) == len(f.read().splitlines())  # a row per input row, and a header


def test_a_truncated_model_file_really_crashes_lightgbm_in_process(tmp_path: Path, trained: Path) -> None:
    """What the probe guards against: loading the truncated model.txt these tests use kills the process."""
    trunc, _ = _break(trained, tmp_path / "state", "truncated")
    load = "import sys, lightgbm; lightgbm.Booster(model_file=sys.argv[1])"
    r = subprocess.run(
        [sys.executable, "-c", load, str(trunc / "model.txt")],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode < 0


@pytest.mark.parametrize("how", ["stale", "truncated"])
def test_backtest_model_option_is_used_or_refused_never_replaced(tmp_path: Path, trained: Path, how: str) -> None:
    """A good promoted model is right there, yet a broken --model is an error naming its path and reason (exit
    2, no output written): a backtest silently run with another model would read as this one's result. The
    installed console script, as an operator runs it."""
    state = tmp_path / "state"
    _bundle(trained, state, "disk", "v-good")
    given = tmp_path / "given"
    broken, reason = _break(trained, given, how)
    out = tmp_path / "scores.csv"
    args = ("--state-dir", str(state), "backtest", "disk", "--backblaze", str(DAILY_2013), "--output", str(out))
    r = _run(str(PMAINTD), *args, "--model", str(broken))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith(f"model error {reason}") and "no other one is used in its place" in r.stderr
    assert not out.exists() and "Traceback" not in r.stderr and r.stdout == ""

    r = _run(str(PMAINTD), *args, "--model", str(trained))
    assert r.returncode == 0, r.stderr
    assert f"from --model {trained}," in r.stdout
    assert not _lines(r.stderr, "WARNING") and not _lines(r.stderr, "ERROR")
    assert out.is_file()
