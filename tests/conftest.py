"""Shared fixtures: real services on loopback (see tests/services.py) and access to ../shared/data.

When PMAINTD_REQUIRE_SERVICES=1 (CI sets it), a service that cannot start fails the test instead of
skipping it, so a missing install step can never pass as a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("PMAINTD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def unavailable(reason: str) -> None:
    """Skip, or fail under PMAINTD_REQUIRE_SERVICES=1."""
    if os.environ.get("PMAINTD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip with the reason when this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set PMAINTD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Influxd]:
    """A real InfluxDB 1.x on a free loopback port, with database `pmaintd` created."""
    try:
        srv = services.start_influxd(tmp_path_factory.mktemp("influxd"))
    except services.ServiceUnavailable as exc:
        unavailable(str(exc))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Sshd]:
    """A real OpenSSH server on a free loopback port that accepts one generated key."""
    try:
        srv = services.start_sshd(tmp_path_factory.mktemp("sshd"))
    except services.ServiceUnavailable as exc:
        unavailable(str(exc))
    yield srv
    srv.stop()
