"""Fixtures every daemon test uses: systemd's end of the notify socket, and the daemons a test starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon.harness import DaemonProcess, NotifySocket


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    s = NotifySocket()
    yield s
    s.close()


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts; killed at the end if the test left one running."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()
