"""A model bundle that cannot be loaded costs its kind, never the daemon: real `pmaintd run` processes (notify
socket, /metrics, the real sqlite store, real LightGBM) over real Backblaze drive histories, with bundles made
unloadable the two ways an upgrade or a disk does it: trained for an older feature-spec version, and a
truncated model.txt (which crashes LightGBM's parser outright when loaded in-process).

The bundles are copies of a small real disk model trained here with this pmaintd's features, not of the
shipped one: the shipped model is itself stale whenever the feature spec changes until it is retrained, and
then a kind whose promoted bundle is broken has no fallback. The daemon tests expect whichever of the two the
real shipped bundle calls for (`SHIPPED`), and the fallback itself is also tested with a shipped directory
of the test's own."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import signal
import subprocess
from pathlib import Path

import polars as pl
import pytest

from pmaintd.forecast.backblaze import read_backblaze, to_points
from pmaintd.forecast.bundle import BundleError, Registry
from pmaintd.forecast.disk import train_from_backblaze
from pmaintd.forecasting import LoadedModels, load_checked
from pmaintd.resources import shipped_path
from pmaintd.store.sqlite import SqliteStore
from tests.daemon.harness import PMAINTD, free_tcp_port, healthz, metric, metrics, wait_until
from tests.daemon.test_daemon import make_config, start, stored_rows
from tests.forecast.conftest import HDS, SMALL

SHIPPED_DIR = shipped_path("models", "disk")


def _shipped_version() -> str | None:
    """The shipped disk model's version when this pmaintd can load it, else None."""
    try:
        return load_checked(SHIPPED_DIR, "disk").version
    except BundleError:
        return None


SHIPPED = _shipped_version()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real disk model bundle trained on real Backblaze rows with this pmaintd's features."""
    out = tmp_path_factory.mktemp("trained") / "disk"
    train_from_backblaze([HDS], out, SMALL, baselines=False, log=lambda _m: None)
    return out


def _bundle(src: Path, state: Path, kind: str, version: str, *, spec: int | None = None, truncate: bool = False,
            promote: bool = True) -> Path:
    """A copy of the bundle `src` in the state dir's registry as `kind`/`version`: with `spec`, claiming that
    feature-spec version (an older pmaintd's model); with `truncate`, model.txt cut in half (a full disk, an
    interrupted copy). Promoted through the registry, as `pmaintd retrain` promotes."""
    d = state / "models" / kind / version
    shutil.copytree(src, d)
    meta = json.loads((d / "bundle.json").read_text())
    meta.update(kind=kind, version=version)
    if spec is not None:
        meta["feature_spec_version"] = spec
    (d / "bundle.json").write_text(json.dumps(meta))
    if truncate:
        text = (d / "model.txt").read_bytes()
        (d / "model.txt").write_bytes(text[: len(text) // 2])
    if promote:
        Registry(state).promote(kind, version)
    return d


def _drives_in_store(state: Path, n: int = 20) -> list[str]:
    """n real drive histories (Backblaze rows), each moved to end today as if still reporting."""
    df = read_backblaze([HDS])
    serials = df["serial_number"].unique().sort()[:n].to_list()
    df = df.filter(pl.col("serial_number").is_in(serials))
    df = df.with_columns(pl.col("date") + (pl.lit(dt.date.today()) - pl.col("date").max().over("serial_number")))
    st = SqliteStore(state / "pmaintd.db")
    for batch in to_points(df):
        st.write(batch)
    st.close()
    return serials


def _forecasts(state: Path, **tags: str) -> pl.DataFrame:
    st = SqliteStore(state / "pmaintd.db")
    try:
        return st.query("pmaintd_forecast", tags=tags or None)
    finally:
        st.close()


def _status_json(d) -> dict:
    """`pmaintd status --json`'s models by kind; the exit code is 1 exactly when one of them has a problem."""
    res = subprocess.run(
        [str(PMAINTD), "--config", str(d.config_path), "--state-dir", str(d.state_dir), "status", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    models = {m["kind"]: m for m in json.loads(res.stdout)["models"]}
    assert res.returncode == (1 if any(m["problem"] for m in models.values()) else 0), res.stderr
    return models


def _disk_phrase(problem: str) -> str:
    """How STATUS puts a promoted disk bundle's problem: with a loadable shipped model, that one scores."""
    if SHIPPED:
        return f"disk model: promoted one broken, shipped {SHIPPED} in use (promoted bundle: {problem}"
    return f"disk model UNUSABLE, disk not scored: promoted bundle: {problem}"


@pytest.mark.service
def test_stale_models_degrade_their_kinds_and_a_promotion_takes_over_without_restart(
    tmp_path, notify, daemons, trained
):
    """After an upgrade both promoted bundles are for feature-spec version 1. The daemon still gets READY=1 and
    collects; host has nothing else and is not scored (error); disk is scored with the shipped model (warning)
    when that one loads. The log, STATUS, /metrics and `pmaintd status --json` all name the kind, path and
    reason. A later promotion of a good disk model is used by the next forecast run, without a restart."""
    state = tmp_path / "state"
    serials = _drives_in_store(state)
    stale_disk = _bundle(trained, state, "disk", "v-stale", spec=1)
    stale_host = _bundle(trained, state, "host", "h-stale", spec=1)
    stale_meta = (stale_disk / "bundle.json").read_text()
    listen = f"127.0.0.1:{free_tcp_port()}"
    extra = '[forecast]\ninterval = "2s"\nkinds = ["disk", "host"]\nmin_history = "1d"\n'
    d = start(daemons, tmp_path, make_config(listen, extra=extra), notify)

    ready = notify.wait_for(lambda f: f.get("READY") == "1", 60)
    status = ready.fields["STATUS"]
    stale_reason = "built for feature-spec version 1"
    assert f"host model UNUSABLE, host not scored: promoted bundle: {stale_host}: {stale_reason}" in status
    assert _disk_phrase(f"{stale_disk}: {stale_reason}") in status
    wait_until(lambda: "ready:" in d.stderr, 30, "the ready log line")
    log = d.stderr
    host_error = re.search(
        rf"ERROR pmaintd.forecasting: model host cannot be used, host is NOT scored: promoted bundle: "
        rf"{re.escape(str(stale_host))}: {stale_reason}.*run `pmaintd retrain --kind host`", log
    )
    if SHIPPED:
        disk_line = (rf"WARNING pmaintd.forecasting: model disk: the promoted model cannot be loaded, so disk is "
                     rf"scored with the shipped model {SHIPPED} instead")  # fmt: skip
    else:
        disk_line = r"ERROR pmaintd.forecasting: model disk cannot be used, disk is NOT scored"
    disk_problem = re.search(
        rf"{disk_line}.*{re.escape(str(stale_disk))}: {stale_reason}.*run `pmaintd retrain --kind disk`", log
    )
    assert host_error and disk_problem, log
    assert log.index("ready:") > max(host_error.start(), disk_problem.start())

    m = metrics(listen)
    assert m['pmaintd_model_usable{kind="host"}'] == 0 and m['pmaintd_model_broken{kind="host"}'] == 1
    assert m['pmaintd_model_usable{kind="disk"}'] == (1 if SHIPPED else 0)
    assert m['pmaintd_model_broken{kind="disk"}'] == 1
    models = _status_json(d)
    assert models["host"]["usable"] is False and models["host"]["source"] == "none"
    assert str(stale_host) in models["host"]["problem"] and stale_reason in models["host"]["problem"]
    assert models["disk"]["fallback"] is bool(SHIPPED) and models["disk"]["version"] == SHIPPED
    assert models["disk"]["path"] == (str(SHIPPED_DIR) if SHIPPED else None)
    assert str(stale_disk) in models["disk"]["problem"]

    # Collection goes on; disk is scored by the shipped model (if it loads), host by nothing.
    wait_until(lambda: stored_rows(state, "cpu") > 0, 45, "host collector points")
    if SHIPPED:
        wait_until(lambda: _forecasts(state, model_version=SHIPPED).height >= 20, 90, "shipped-model forecasts")
        assert set(_forecasts(state)["entity"].to_list()) == set(serials)
    else:
        assert _forecasts(state).height == 0
    assert healthz(listen)[0] == 200

    good = _bundle(trained, state, "disk", "v-good")
    wait_until(lambda: _forecasts(state, model_version="v-good").height >= 20, 90, "forecasts by the new promotion")
    assert set(_forecasts(state, model_version="v-good")["entity"].to_list()) == set(serials)
    m = metrics(listen)
    assert m['pmaintd_model_usable{kind="disk"}'] == 1 and m['pmaintd_model_broken{kind="disk"}'] == 0
    assert m['pmaintd_model_broken{kind="host"}'] == 1
    notify.wait_for(
        lambda f: "STATUS" in f and "disk model" not in f["STATUS"] and "host model UNUSABLE" in f["STATUS"], 30
    )
    models = _status_json(d)
    assert models["disk"]["source"] == "promoted" and models["disk"]["path"] == str(good)
    assert models["disk"]["problem"] is None
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    log = d.stderr
    assert "model disk: fixed, promoted bundle v-good in use" in log and "models loaded: disk v-good" in log
    assert log.count("model host cannot be used") == 1  # said once, not at every forecast run
    assert _forecasts(state, kind="host").height == 0
    assert (stale_disk / "bundle.json").read_text() == stale_meta  # the broken promotion is left for inspection
    assert "Traceback" not in log


@pytest.mark.service
def test_a_truncated_model_file_survives_start_and_sighup_and_a_repair_in_place_is_used(
    tmp_path, notify, daemons, trained
):
    """A promoted disk bundle whose model.txt is cut in half: loading it in the daemon's process would kill
    it (LightGBM's parser crashes on it). The daemon starts, stays up through a SIGHUP reload, and uses the
    bundle once model.txt is copied back whole."""
    state = tmp_path / "state"
    _drives_in_store(state)
    trunc = _bundle(trained, state, "disk", "v-trunc", truncate=True)
    listen = f"127.0.0.1:{free_tcp_port()}"
    extra = '[forecast]\ninterval = "2s"\nkinds = ["disk"]\nmin_history = "1d"\n'
    d = start(daemons, tmp_path, make_config(listen, extra=extra), notify)
    ready = notify.wait_for(lambda f: f.get("READY") == "1", 60)
    reason = _disk_phrase(f"{trunc / 'model.txt'} is truncated or damaged: LightGBM crashed reading it")
    assert reason in ready.fields["STATUS"]
    wait_until(lambda: "ready:" in d.stderr, 30, "the ready log line")
    assert f"{trunc / 'model.txt'} is truncated or damaged" in d.stderr
    if SHIPPED:
        wait_until(lambda: _forecasts(state, model_version=SHIPPED).height >= 20, 90, "shipped-model forecasts")

    d.signal(signal.SIGHUP)
    wait_until(lambda: metric(metrics(listen), "pmaintd_reloads_total", outcome="ok") >= 1, 60, "the reload")
    assert d.proc is not None and d.proc.poll() is None
    assert metric(metrics(listen), "pmaintd_model_broken", kind="disk") == 1
    assert "reload failed" not in d.stderr

    shutil.copy(trained / "model.txt", trunc / "model.txt")
    wait_until(lambda: _forecasts(state, model_version="v-trunc").height >= 20, 90, "forecasts by the repaired bundle")
    assert metric(metrics(listen), "pmaintd_model_broken", kind="disk") == 0
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert "Traceback" not in d.stderr


def test_fallback_to_shipped_and_nothing_loadable_each_logged_once(tmp_path, caplog, trained):
    """LoadedModels directly, with a "shipped" directory of its own, broken and then repaired."""
    caplog.set_level(logging.INFO, logger="pmaintd.forecasting")
    state = tmp_path / "state"
    shipped = tmp_path / "shipped"
    shutil.copytree(trained, shipped / "disk")
    shipped_version = json.loads((trained / "bundle.json").read_text())["version"]
    (shipped / "disk" / "model.txt").write_bytes((trained / "model.txt").read_bytes()[:20000])
    stale = _bundle(trained, state, "disk", "v-stale", spec=1)
    models = LoadedModels(state, ["disk"], shipped_root=shipped)

    assert models.refresh() == []
    (s,) = models.states()
    assert not s.usable and not s.fallback and s.source == "none" and models.current("disk") is None
    assert not models.any()
    assert f"promoted bundle: {stale}: built for feature-spec version 1" in s.problem
    assert f"shipped bundle: {shipped / 'disk' / 'model.txt'} is truncated or damaged" in s.problem
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "pmaintd retrain --kind disk" in errors[0].getMessage()

    caplog.clear()
    assert models.refresh() == [] and not caplog.records  # unchanged files: not tried or logged again

    shutil.copy(trained / "model.txt", shipped / "disk" / "model.txt")
    assert models.refresh() == [f"disk {shipped_version}"]
    (s,) = models.states()
    assert s.fallback and s.source == "shipped" and models.current("disk").version == shipped_version
    assert models.current_path("disk") == shipped / "disk"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert str(stale) in caplog.records[0].getMessage()

    caplog.clear()
    _bundle(trained, state, "disk", "v-good")
    assert models.refresh() == ["disk v-good"]
    (s,) = models.states()
    assert s.usable and s.problem is None and s.source == "promoted"
    assert [r.getMessage() for r in caplog.records] == ["model disk: fixed, promoted bundle v-good in use"]


def test_a_bundle_of_another_kind_is_not_loaded_as_this_kind(tmp_path, trained):
    state = tmp_path / "state"
    misplaced = _bundle(trained, state, "network", "n1", promote=False)
    meta = json.loads((misplaced / "bundle.json").read_text())
    (misplaced / "bundle.json").write_text(json.dumps(meta | {"kind": "disk"}))
    Registry(state).promote("network", "n1")
    models = LoadedModels(state, ["network"], report=False)
    models.refresh()
    (s,) = models.states()
    assert not s.usable and s.problem == f"promoted bundle: {misplaced}: holds a disk model, not a network model"


def test_the_retrain_the_error_names_works_over_a_stale_promoted_model(tmp_path, trained):
    """`pmaintd retrain --kind disk` (what the log tells the operator to run) with the promoted bundle stale:
    the challenger is judged against the model actually in use (the shipped one, or none when that does not
    load either) and, promoted, fixes the kind. Real training on real Backblaze rows, through the installed
    console script."""
    state = tmp_path / "state"
    _bundle(trained, state, "disk", "v-stale", spec=1)
    res = subprocess.run(
        [str(PMAINTD), "--state-dir", str(state), "retrain", "--kind", "disk", "--backblaze", str(HDS), "--no-store",
         "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"the champion is {f'shipped {SHIPPED}' if SHIPPED else 'none'}" in res.stderr
    out = json.loads(res.stdout)
    assert out["champion_version"] == SHIPPED and out["promoted"] is True, out
    models = LoadedModels(state, ["disk"], report=False)
    models.refresh()
    (s,) = models.states()
    assert s.source == "promoted" and s.version == out["challenger_version"] and s.problem is None


def test_status_exits_1_while_a_model_bundle_is_broken(tmp_path, trained):
    """`pmaintd status` is what a monitoring check runs: exit 0 while every model loads, 1 while a promoted
    bundle is broken, even when the shipped model scores its kind in its place; the text says which."""
    state = tmp_path / "state"
    config = tmp_path / "pmaintd.toml"
    config.write_text('[forecast]\nkinds = ["disk"]\n')

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(PMAINTD), "--config", str(config), "--state-dir", str(state), "status", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    _bundle(trained, state, "disk", "v-good")
    assert status().returncode == 0 and status("--json").returncode == 0
    stale = _bundle(trained, state, "disk", "v-stale", spec=1)
    r = status()
    assert r.returncode == 1, r.stderr
    assert "model problem" in r.stderr and str(stale) in " ".join(r.stderr.split())
    r = status("--json")
    assert r.returncode == 1 and str(stale) in json.loads(r.stdout)["models"][0]["problem"]
    Registry(state).promote("disk", "v-good")
    assert status().returncode == 0
