"""This machine's name, as the `host` tag and target name of everything collected from it.

The machines each machine-level collector polls (this one and the [[hosts]] entries) are chosen in
pmaintd.collect.hosts.
"""

from __future__ import annotations

import socket


def local_hostname() -> str:
    """This machine's name as Telegraf reports it in the `host` tag (the kernel's hostname)."""
    return socket.gethostname()
