"""Batched reads over a real OpenSSH server on loopback: one remote `grep -H` instead of a command per file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pmaintd import collect
from pmaintd.collect import Target
from pmaintd.collect.files import read_many
from pmaintd.collect.hosts import close_transports
from pmaintd.collect.transport import LocalTransport
from pmaintd.config import Config, validate
from tests.collect.filetree import Counting
from tests.services import Sshd

pytestmark = pytest.mark.service


@pytest.fixture
def ssh_config(sshd: Sshd) -> Iterator[Config]:
    close_transports()
    yield validate(
        {
            "hosts": [
                {"name": "here", "transport": "local", "collect": []},
                {
                    "name": "loop",
                    "address": sshd.address,
                    "user": sshd.user,
                    "key_file": str(sshd.client_key),
                    "known_hosts": str(sshd.known_hosts),
                    "collect": ["diskio", "host"],
                },
            ]
        }
    )
    close_transports()


def test_read_many_over_ssh_equals_local_reads(ssh_config: Config, tmp_path: Path) -> None:
    odd = tmp_path / "b8:0"  # udev database names contain ':'; so may the content
    odd.write_text("S:disk/by-id/x\nE:ID_SERIAL=A:B C\nE:ID_WWN=0x50014ee2b9a1c3d5\n")
    spaced = tmp_path / "with space 'and quote"
    spaced.write_text("41850\n")
    paths = ["/proc/loadavg", "/proc/meminfo", str(odd), str(spaced), str(tmp_path / "missing")]
    (c,) = collect.build(ssh_config, only=["host"])
    (t,) = c.targets()
    assert t.transport is not None and type(t.transport).__name__ == "SshTransport"
    batched = Counting(t.transport, batch_reads=True)
    remote = read_many(batched, paths)
    assert batched.calls == 1
    one_by_one = Counting(t.transport, batch_reads=False)
    remote_sftp = read_many(one_by_one, paths)
    assert one_by_one.calls == len(paths)
    local = read_many(LocalTransport("here"), paths)
    assert set(remote) == set(remote_sftp) == set(local) == set(paths[:4])
    for p in (str(odd), str(spaced)):
        assert remote[p] == remote_sftp[p] == local[p]
    assert remote["/proc/meminfo"].startswith("MemTotal:")


@pytest.mark.parametrize("sftp", [False, True], ids=["cat", "sftp"])
def test_host_and_diskio_over_ssh_steady_polls(ssh_config: Config, sftp: bool) -> None:
    """This machine read through sshd: the same measurements as locally, and after the first poll a host
    without an sftp subsystem (every read a remote `cat`) needs exactly one remote command per collector; with
    SFTP, files are read one by one (diskstats, or the 5 /proc files)."""
    batch_reads = not sftp
    for c in collect.build(ssh_config, only=["diskio", "host"]):
        (t,) = c.targets()
        assert t.transport is not None
        t.transport._no_sftp = not sftp  # type: ignore[attr-defined]  # as a host without the subsystem
        counted = Counting(t.transport)
        ct = Target(t.name, t.interval, t.timeout, counted)
        first = c.collect(ct)
        counted.calls = 0
        second = c.collect(ct)
        assert counted.calls == (1 if batch_reads or c.name == "diskio" else 5), c.name
        assert {p.measurement for p in first} == {p.measurement for p in second}
        assert all(p.tags["host"] == "loop" for p in second)
        if c.name == "host":
            cpu = next(p for p in second if p.measurement == "cpu" and p.tags["cpu"] == "cpu-total")
            assert any(k.startswith("usage_") for k in cpu.fields)
            mem = next(p for p in second if p.measurement == "mem")
            assert mem.fields["total"] == int(Path("/proc/meminfo").read_text().split()[1]) * 1024
        else:
            names = {p.tags["name"] for p in second}
            assert names and names <= {ln.split()[2] for ln in Path("/proc/diskstats").read_text().splitlines()}
