"""The shipped systemd files, checked with systemd's own tools (systemd is not PID 1 here, so this is lint:
`systemd-analyze verify` exits 0 even on unknown keys, hence the test fails on ANY output)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unavailable

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ["pmaintd.service", "pmaintd-retrain.service", "pmaintd-retrain.timer"]
PMAINTD = Path(sys.executable).with_name("pmaintd")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (Debian package systemd)")
    return path  # type: ignore[return-value]


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units with ExecStart= pointing at this venv's pmaintd (verify checks the binary exists)."""
    for name in UNITS:
        text = (SYSTEMD / name).read_text().replace("/usr/bin/pmaintd", str(PMAINTD))
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_prints_nothing(units: Path, name: str):
    r = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", str(units / name)],
        capture_output=True,
        text=True,
        cwd=units,
        timeout=60,
    )
    assert r.returncode == 0
    assert r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_service_is_notify_with_watchdog_reload_and_smartctl_capabilities():
    text = (SYSTEMD / "pmaintd.service").read_text()
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=pmaintd",
        "StateDirectory=pmaintd",
        "ConfigurationDirectory=pmaintd",
        "LogsDirectory=pmaintd",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "AmbientCapabilities=CAP_SYS_RAWIO CAP_SYS_ADMIN CAP_DAC_OVERRIDE",
        "CapabilityBoundingSet=CAP_SYS_RAWIO CAP_SYS_ADMIN CAP_DAC_OVERRIDE",
    ]:
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    assert re.search(r"^LoadCredential=\S+:/etc/pmaintd/credentials", text, re.M)
    stop = int(re.search(r"^TimeoutStopSec=(\d+)s$", text, re.M).group(1))  # type: ignore[union-attr]
    from pmaintd.config import DaemonConfig

    assert DaemonConfig().stop_timeout < stop, "the daemon's flush deadline must end before systemd's SIGKILL"
    timer = (SYSTEMD / "pmaintd-retrain.timer").read_text()
    assert re.search(r"^Persistent=true$", timer, re.M)


def test_security_exposure_stays_low(units: Path):
    """`systemd-analyze security --offline=true` scores the hardening (0 best, 10 worst); the README quotes it."""
    out = {}
    for name in ("pmaintd.service", "pmaintd-retrain.service"):
        r = subprocess.run(
            [tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(units / name)],
            capture_output=True,
            text=True,
            cwd=units,
            timeout=60,
        )
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
        assert m, r.stdout[-2000:] + r.stderr
        out[name] = float(m.group(1))
    assert out["pmaintd.service"] <= 3.0, out  # it keeps 3 capabilities and raw disk access on purpose
    assert out["pmaintd-retrain.service"] <= 2.0, out


def test_sysusers_and_tmpfiles_apply_to_an_empty_root(tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    r = subprocess.run(
        [tool("systemd-sysusers"), f"--root={root}", str(SYSTEMD / "sysusers.d" / "pmaintd.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(r"^pmaintd:x:\d+:\d+:[^:]*:/var/lib/pmaintd:/usr/sbin/nologin$", passwd, re.M), passwd
    r = subprocess.run(
        [tool("systemd-tmpfiles"), f"--root={root}", "--create", str(SYSTEMD / "tmpfiles.d" / "pmaintd.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    creds = root / "etc" / "pmaintd" / "credentials"
    assert creds.is_dir() and (creds.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("name", ["pmaintd.service", "pmaintd-retrain.service"])
def test_every_exec_command_is_a_real_pmaintd_command(name: str):
    """Each ExecStart= runs a pmaintd command with options this pmaintd accepts (checked with --help)."""
    commands = re.findall(r"^ExecStart=-?/usr/bin/pmaintd (.+)$", (SYSTEMD / name).read_text(), re.M)
    assert commands
    for cmd in commands:
        r = subprocess.run([str(PMAINTD), *cmd.split(), "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{cmd}: {r.stderr}"
