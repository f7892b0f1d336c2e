"""The service fixtures themselves: each starts a real server that answers on loopback."""

from __future__ import annotations

import paramiko

from tests.services import Influxd, Sshd


def test_influxd_answers_influxql(influxd: Influxd) -> None:
    res = influxd.query("SHOW DATABASES")
    names = [v[0] for v in res["results"][0]["series"][0]["values"]]
    assert "pmaintd" in names


def test_sshd_accepts_generated_key_with_strict_host_keys(sshd: Sshd) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=sshd.port, username=sshd.user, key_filename=str(sshd.client_key),
                   look_for_keys=False, allow_agent=False, timeout=5)
    _, out, _ = client.exec_command("echo hello")
    assert out.read().decode().strip() == "hello"
    client.close()
