"""Shared fixtures: real services on loopback (see tests/services.py) and access to ../shared/data.

When PMAINTD_REQUIRE_SERVICES=1 (CI sets it), a service that cannot start fails the test instead of
skipping it, so a missing install step can never pass as a skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from tests import services

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
T = TypeVar("T")
SHARED_DATA = Path(os.environ.get("PMAINTD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def unavailable(reason: str) -> None:
    """Skip, or fail under PMAINTD_REQUIRE_SERVICES=1."""
    if os.environ.get("PMAINTD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


@contextmanager
def running(start: Callable[[Path], T], workdir: Path) -> Iterator[T]:
    """A service started in `workdir` for a fixture or one test (skip, or fail under
    PMAINTD_REQUIRE_SERVICES=1, when it cannot start), stopped when the block ends."""
    try:
        srv = start(workdir)
    except services.ServiceUnavailable as exc:
        unavailable(str(exc))
    try:
        yield srv
    finally:
        srv.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip with the reason when this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set PMAINTD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Influxd]:
    """A real InfluxDB 1.x on a free loopback port, with database `pmaintd` created."""
    with running(services.start_influxd, tmp_path_factory.mktemp("influxd")) as srv:
        yield srv


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Sshd]:
    """A real OpenSSH server on a free loopback port that accepts one generated key."""
    with running(services.start_sshd, tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


@pytest.fixture
def haproxy_lb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Haproxy]:
    """A real HAProxy on loopback balancing three real HTTP servers (web1..web3, each answering its own name),
    with the admin runtime API on a unix socket."""
    from tests.http_backends import start_backends

    backends = start_backends(["web1", "web2", "web3"])
    try:
        srv = services.start_haproxy(tmp_path_factory.mktemp("haproxy"), {b.name: b.port for b in backends})
    except services.ServiceUnavailable as exc:
        for b in backends:
            b.stop()
        unavailable(str(exc))
    yield srv
    srv.stop()
    for b in backends:
        b.stop()


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Snmpd]:
    """net-snmp's snmpd on a free loopback UDP port: community `public`, v3 authPriv users (services.py)."""
    with running(services.start_snmpd, tmp_path_factory.mktemp("snmpd")) as srv:
        yield srv


SNMP_RECORDINGS = Path(__file__).resolve().parent / "collect" / "snmp" / "testdata"


@pytest.fixture(scope="session")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Snmpsim]:
    """snmpsim serving the real-device recordings in tests/collect/snmp/testdata (community = file stem)."""
    recordings = sorted(SNMP_RECORDINGS.glob("*.snmprec*"))
    with running(lambda d: services.start_snmpsim(d, recordings), tmp_path_factory.mktemp("snmpsim")) as srv:
        yield srv
