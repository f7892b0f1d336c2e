"""The machines that machine-level collectors (host, diskio) poll.

Today that is this machine through a LocalTransport; remote hosts reached over SSH plug in here, so that
every machine-level collector gets them without changing its own code.
"""

from __future__ import annotations

import socket

from pmaintd.collect import Target
from pmaintd.collect.transport import LocalTransport
from pmaintd.config import LocalCollectorConfig


def local_hostname() -> str:
    """This machine's name as Telegraf reports it in the `host` tag (the kernel's hostname)."""
    return socket.gethostname()


def machine_targets(section: LocalCollectorConfig) -> list[Target]:
    """One target per machine, with the section's interval and timeout."""
    host = local_hostname()
    return [Target(name=host, interval=section.interval, timeout=section.timeout, transport=LocalTransport(host))]
