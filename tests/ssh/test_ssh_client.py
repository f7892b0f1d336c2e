"""pmaintd.ssh against a real OpenSSH server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmaintd.ssh import HostKeyRejected, SshClient, SshEndpoint, SshError
from tests.services import Sshd


def _endpoint(sshd: Sshd, known_hosts: Path | None = None) -> SshEndpoint:
    return SshEndpoint("h1", sshd.address, sshd.user, sshd.client_key, known_hosts or sshd.known_hosts, 5.0)


def test_runs_command_and_reuses_one_connection(sshd: Sshd) -> None:
    c = SshClient(_endpoint(sshd))
    r1 = c.run("echo out; echo err >&2; exit 3", timeout=10)
    assert (r1.returncode, r1.stdout, r1.stderr, r1.truncated) == (3, "out\n", "err\n", False)
    first = c._client
    assert c.run("true", timeout=10).returncode == 0
    assert c._client is first
    c.close()


def test_bracketed_address_config_accepts_connects(sshd: Sshd) -> None:
    """`[ADDR]:PORT` is the form config validation accepts for IPv6; the client must split it the same way
    (the loopback sshd listens on IPv4 only, so the bracketed form is exercised with 127.0.0.1)."""
    address = f"[127.0.0.1]:{sshd.port}"
    ep = SshEndpoint("h1", address, sshd.user, sshd.client_key, sshd.known_hosts, 5.0)
    assert ep.hostport == ("127.0.0.1", sshd.port)
    c = SshClient(ep)
    assert c.run("echo ok", timeout=10).stdout == "ok\n"
    c.close()


def test_output_is_bounded(sshd: Sshd) -> None:
    c = SshClient(_endpoint(sshd))
    r = c.run("head -c 300000 /dev/zero", timeout=10, max_output=1000)
    assert r.truncated and len(r.stdout) == 1000 and r.returncode == 0
    c.close()


def test_timeout_raises(sshd: Sshd) -> None:
    c = SshClient(_endpoint(sshd))
    with pytest.raises(TimeoutError):
        c.run("sleep 5", timeout=0.5)
    c.close()


def test_unknown_host_key_is_refused_and_nothing_runs(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    marker = tmp_path / "ran"
    with pytest.raises(HostKeyRejected, match="not in"):
        SshClient(_endpoint(sshd, empty)).run(f"touch {marker}", timeout=5)
    assert not marker.exists()
    assert empty.read_text() == ""  # never learned


def test_damaged_known_hosts_is_a_clear_error_and_nothing_runs(sshd: Sshd, tmp_path: Path) -> None:
    kt, key = sshd.host_key_pub.split()
    damaged = tmp_path / "known_hosts"
    damaged.write_text(f"[127.0.0.1]:{sshd.port} {kt} {key[:-3]}\n")  # base64 cut short
    marker = tmp_path / "ran"
    with pytest.raises(SshError, match=r"h1: known_hosts .*known_hosts has an invalid key"):
        SshClient(_endpoint(sshd, damaged)).run(f"touch {marker}", timeout=5)
    assert not marker.exists()


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    wrong = sshd.foreign_known_hosts(tmp_path / "known_hosts")
    marker = tmp_path / "ran"
    with pytest.raises(HostKeyRejected, match="CHANGED"):
        SshClient(_endpoint(sshd, wrong)).run(f"touch {marker}", timeout=5)
    assert not marker.exists()
