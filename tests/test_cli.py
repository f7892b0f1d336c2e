"""The `pmaintd` command as an operator runs it: the installed console script in a subprocess (and, where a
test must change a module constant or register a collector, click's CliRunner in-process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from pmaintd import cli as climod
from pmaintd import collect
from pmaintd import config as cfgmod
from pmaintd.collect import CollectError, Target
from pmaintd.telemetry import Point, parse_time
from tests.services import Influxd

PMAINTD = Path(sys.executable).parent / "pmaintd"
ROOT = Path(__file__).resolve().parent.parent
_ENV_KEYS = ("PMAINTD_CONFIG", "PMAINTD_STATE_DIR", "STATE_DIRECTORY", "XDG_STATE_HOME")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_KEYS}
    env.update(extra)
    return env


def pmaintd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PMAINTD), *args], capture_output=True, text=True, env=env or _env(), cwd=cwd, timeout=120, check=False
    )


def _config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- collect --once -------------------------------------------------------------------------------------


def test_collect_once_json_prints_points_and_stores_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = pmaintd("--state-dir", str(state), "collect", "--once", "--only", "diskio", "--only", "host", "--json")
    assert r.returncode == 0, r.stderr
    points = json.loads(r.stdout)
    assert isinstance(points, list) and points
    for p in points:
        assert set(p) == {"measurement", "tags", "fields", "time"}
        assert isinstance(p["tags"], dict) and isinstance(p["fields"], dict) and p["fields"]
        parse_time(p["time"])
    measurements = {p["measurement"] for p in points}
    assert {"diskio", "cpu", "mem", "swap", "system"} <= measurements
    assert (state / "pmaintd.db").is_file() and (state / "runstate.db").is_file()

    s = pmaintd("--state-dir", str(state), "status", "--json")
    assert s.returncode == 0, s.stderr
    status = json.loads(s.stdout)
    assert status["store"] == {"kind": "sqlite", "location": str(state / "pmaintd.db"), "error": None}
    counts = {m["measurement"]: m["points_24h"] for m in status["measurements"]}
    for m in measurements:
        assert counts[m] == sum(1 for p in points if p["measurement"] == m), m
    assert counts["pmaintd_collector"] == 2  # one self-metric point per (collector, target)
    runs = {r["collector"]: r for r in status["collectors"] if r["last_run"] is not None}
    assert set(runs) == {"diskio", "host"}
    assert runs["diskio"]["ok"] is True and runs["diskio"]["points"] == counts["diskio"]
    assert runs["host"]["error"] is None and parse_time(runs["host"]["last_run"]) > 0


def test_collect_only_and_no_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = pmaintd("--state-dir", str(state), "collect", "--once", "--only", "diskio", "--json", "--no-store")
    assert r.returncode == 0, r.stderr
    assert {p["measurement"] for p in json.loads(r.stdout)} == {"diskio"}
    assert not (state / "pmaintd.db").exists() and not (state / "runstate.db").exists()


def test_collect_table_output(tmp_path: Path) -> None:
    r = pmaintd("--state-dir", str(tmp_path), "collect", "--once", "--only", "host")
    assert r.returncode == 0, r.stderr
    assert "host" in r.stdout and "ok" in r.stdout and "diskio" not in r.stdout


def test_collect_usage_errors(tmp_path: Path) -> None:
    r = pmaintd("--state-dir", str(tmp_path), "collect", "--once", "--only", "nosuch")
    assert r.returncode == 2
    assert "unknown collector 'nosuch'" in r.stderr and "diskio" in r.stderr and "host" in r.stderr
    r = pmaintd("--state-dir", str(tmp_path), "collect")
    assert r.returncode == 2 and "--once" in r.stderr and "pmaintd run" in r.stderr
    cfg = _config(tmp_path / "c.toml", "[collect.host]\nenabled = false\n")
    r = pmaintd("--config", str(cfg), "--state-dir", str(tmp_path), "collect", "--once", "--only", "host")
    assert r.returncode == 2 and "collect.host.enabled = false" in r.stderr


class _Broken:
    """A collector whose target cannot be read: drives the CLI's failure path (in-process)."""

    name = "broken"

    def targets(self) -> Sequence[Target]:
        return [Target(name="db7", interval=60, timeout=5)]

    def collect(self, target: Target) -> list[Point]:
        raise CollectError(f"{target.name}: cannot read /proc/diskstats: Permission denied")


@pytest.fixture
def broken_collector() -> Iterator[None]:
    collect.names()  # load the built-ins first so the registry is complete
    collect.register("broken")(lambda _cfg: _Broken())
    yield
    collect._REGISTRY.pop("broken", None)


def test_failing_collector_reports_on_stderr_others_still_store(tmp_path: Path, broken_collector: None) -> None:
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    r = runner.invoke(climod.cli, ["--state-dir", str(tmp_path), "collect", "--once", "--json"], env=_env())
    assert r.exit_code == 1
    assert "collector broken failed on db7: db7: cannot read /proc/diskstats: Permission denied" in r.stderr
    assert {p["measurement"] for p in json.loads(r.stdout)} >= {"diskio", "cpu"}
    r = runner.invoke(climod.cli, ["--state-dir", str(tmp_path), "status", "--json"], env=_env())
    assert r.exit_code == 0, r.stderr
    status = json.loads(r.stdout)
    runs = {x["collector"]: x for x in status["collectors"]}
    assert runs["broken"]["ok"] is False and "Permission denied" in runs["broken"]["error"]
    assert runs["broken"]["consecutive_failures"] == 1 and runs["broken"]["last_ok"] is None
    assert runs["diskio"]["ok"] is True
    assert {m["measurement"] for m in status["measurements"]} >= {"diskio", "cpu", "pmaintd_collector"}


def test_status_before_any_collection(tmp_path: Path) -> None:
    r = pmaintd("--state-dir", str(tmp_path), "status", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["measurements"] == []
    never = {c["collector"] for c in status["collectors"] if c["last_run"] is None}
    assert {"diskio", "host"} <= never and len(never) == len(status["collectors"])
    text = pmaintd("--state-dir", str(tmp_path), "status")
    assert text.returncode == 0 and "never" in text.stdout and "sqlite" in text.stdout


def test_status_counts_the_last_24h_and_shows_how_old_the_newest_point_is(tmp_path: Path) -> None:
    """A store with history: the count says it covers 24 h (key and column), a measurement that went quiet
    200 days ago still shows its newest point, and the table says how long ago that was."""
    from pmaintd.store.sqlite import SqliteStore
    from pmaintd.telemetry import format_time, now_ns

    now, day = now_ns(), 86400 * 10**9
    st = SqliteStore(tmp_path / "pmaintd.db", retention_s=3650 * 86400.0)
    st.write([Point("cpu", {"host": "a"}, {"usage_idle": 1.0}, now - t) for t in (600 * 10**9, 3 * day, 900 * day)]
             + [Point("diskio", {"name": "sda"}, {"reads": 1}, now - t) for t in (200 * day, 700 * day)])
    st.close()
    r = pmaintd("--state-dir", str(tmp_path), "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["measurements"] == [
        {"measurement": "cpu", "points_24h": 1, "newest": format_time(now - 600 * 10**9)},
        {"measurement": "diskio", "points_24h": 0, "newest": format_time(now - 200 * day)},
    ]
    text = pmaintd("--state-dir", str(tmp_path), "status", env=_env(COLUMNS="200"))
    assert text.returncode == 0, text.stderr
    lines = [ln.replace("┃", "│").split("│") for ln in text.stdout.splitlines()]  # header cells use ┃
    rows = {cells[1].strip(): [c.strip() for c in cells[2:-1]] for cells in lines if len(cells) == 6}
    assert rows["measurement"] == ["points (24h)", "newest", "age"]
    assert rows["cpu"] == ["1", format_time(now - 600 * 10**9)[:19] + "Z", "10m ago"]
    assert rows["diskio"] == ["0", format_time(now - 200 * day)[:19] + "Z", "200d ago"]


# --- check-config ---------------------------------------------------------------------------------------


def test_check_config_bad_value_names_key_value_and_allowed(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "bad.toml", '[store]\nkind = "mongodb"\n')
    r = pmaintd("--config", str(cfg), "check-config")
    assert r.returncode == 2
    assert "store.kind" in r.stderr and "mongodb" in r.stderr and "sqlite" in r.stderr and "influxdb" in r.stderr
    cfg = _config(tmp_path / "dur.toml", '[collect.diskio]\ninterval = "soon"\n')
    r = pmaintd("--config", str(cfg), "check-config")
    assert r.returncode == 2 and "collect.diskio.interval" in r.stderr and "soon" in r.stderr


def test_check_config_unknown_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "typo.toml", "[collect.diskio]\nskip_virtul = false\n")
    r = pmaintd("--config", str(cfg), "check-config")
    assert r.returncode == 2
    assert "collect.diskio.skip_virtul" in r.stderr and "unknown key" in r.stderr and "skip_virtual" in r.stderr


def test_check_config_valid_example_and_cross_field_rule(tmp_path: Path) -> None:
    r = pmaintd("--config", str(ROOT / "examples" / "pmaintd.toml"), "check-config")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "valid" in r.stdout
    cfg = _config(tmp_path / "x.toml", '[store]\nkind = "influxdb"\n')
    r = pmaintd("--config", str(cfg), "check-config")
    assert r.returncode == 2 and "store.url" in r.stderr


# --- where config and state come from ---------------------------------------------------------------------


def test_config_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config > $PMAINTD_CONFIG > /etc/pmaintd/pmaintd.toml > built-in defaults. The /etc path is a module
    constant pointed at a temp file, so the test never touches the machine's /etc."""
    flag = _config(tmp_path / "flag.toml", "")
    envcfg = _config(tmp_path / "env.toml", "")
    etc = tmp_path / "etc-pmaintd.toml"
    monkeypatch.setattr(cfgmod, "DEFAULT_CONFIG_PATH", etc)
    runner = CliRunner()

    def source(args: list[str], env: dict[str, str]) -> str:
        r = runner.invoke(climod.cli, [*args, "check-config"], env=env)
        assert r.exit_code == 0, r.output
        return r.output.split(": valid")[0]

    base = {k: None for k in _ENV_KEYS}
    assert source(["--config", str(flag)], {**base, "PMAINTD_CONFIG": str(envcfg)}) == str(flag)
    assert source([], {**base, "PMAINTD_CONFIG": str(envcfg)}) == str(envcfg)
    assert source([], base) == "built-in defaults"  # /etc file absent
    etc.write_text("")
    assert source([], base) == str(etc)
    assert source([], {**base, "PMAINTD_CONFIG": str(envcfg)}) == str(envcfg)
    r = pmaintd("check-config", env=_env(PMAINTD_CONFIG=str(tmp_path / "missing.toml")))
    assert r.returncode == 2 and "missing.toml" in r.stderr and "cannot read" in r.stderr


def test_state_dir_resolution_order(tmp_path: Path) -> None:
    flag, env_dir, systemd_dir = tmp_path / "flag", tmp_path / "env", tmp_path / "systemd"

    def location(*args: str, **env: str) -> str:
        r = pmaintd(*args, "status", "--json", env=_env(**env))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["store"]["location"]

    assert location("--state-dir", str(flag), PMAINTD_STATE_DIR=str(env_dir)) == str(flag / "pmaintd.db")
    assert location(PMAINTD_STATE_DIR=str(env_dir), STATE_DIRECTORY=str(systemd_dir)) == str(env_dir / "pmaintd.db")
    assert location(STATE_DIRECTORY=str(systemd_dir)) == str(systemd_dir / "pmaintd.db")
    # systemd lists one directory per StateDirectory= name, colon-separated; $PMAINTD_STATE_DIR is one path,
    # and a colon in it (a timestamped run directory) used to cut it short, writing to another directory.
    assert location(STATE_DIRECTORY=f"{systemd_dir}:{tmp_path / 'other'}") == str(systemd_dir / "pmaintd.db")
    stamped = tmp_path / "run-2026-11-29T20:50"
    assert location(PMAINTD_STATE_DIR=str(stamped)) == str(stamped / "pmaintd.db")
    assert cfgmod.resolve_state_dir(None, env={}) == (
        Path("/var/lib/pmaintd") if os.geteuid() == 0 else Path.home() / ".local/state/pmaintd"
    )


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to nobody")
def test_state_dir_for_a_non_root_user_follows_xdg(tmp_path: Path) -> None:
    """As an unprivileged user (nobody, via setpriv) the default is $XDG_STATE_HOME/pmaintd, not /var/lib."""
    code = "from pmaintd.config import resolve_state_dir; print(resolve_state_dir(None))"
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(XDG_STATE_HOME="/tmp/xdg-x"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/tmp/xdg-x/pmaintd"


# --- secrets ----------------------------------------------------------------------------------------------


@pytest.mark.service
def test_secrets_never_printed(tmp_path: Path, influxd: Influxd) -> None:
    """A password file and credentials inside the URL: neither appears in the output of check-config,
    collect or status (real InfluxDB 1.x, which ignores credentials when auth is off). Credentials inside
    the URL are refused, without echoing them: secrets belong in *_file paths."""
    password = tmp_path / "influx.password"
    password.write_text("pw-Secret-4711\n")
    host = influxd.url.removeprefix("http://")
    in_url = _config(
        tmp_path / "in-url.toml", f'[store]\nkind = "influxdb"\nurl = "http://urluser:url-Secret-0815@{host}"\n'
    )
    r = pmaintd("--config", str(in_url), "check-config")
    assert r.returncode == 2 and "store.url" in r.stderr and "password_file" in r.stderr
    assert "url-Secret-0815" not in r.stdout + r.stderr
    cfg = _config(
        tmp_path / "influx.toml",
        f'[store]\nkind = "influxdb"\nurl = "http://{host}"\n'
        f'api = "v1"\ndatabase = "{influxd.database}"\nusername = "pmaintd"\npassword_file = "{password}"\n',
    )
    runs = {}
    for args in (
        ("check-config",),
        ("collect", "--once", "--only", "diskio", "--json"),
        ("status",),
        ("status", "--json"),
    ):
        r = pmaintd("--config", str(cfg), "--state-dir", str(tmp_path / "state"), "--log-level", "debug", *args)
        assert r.returncode == 0, (args, r.stderr)
        assert "pw-Secret-4711" not in r.stdout + r.stderr, args
        runs[args] = r
    status = json.loads(runs[("status", "--json")].stdout)
    assert status["store"]["kind"] == "influxdb" and status["store"]["location"] == f"http://{host}"
    assert any(m["measurement"] == "diskio" and m["points_24h"] >= 1 for m in status["measurements"])
