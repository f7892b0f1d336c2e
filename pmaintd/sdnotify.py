"""The systemd notify protocol (sd_notify(3)), without libsystemd: one AF_UNIX datagram per message.

systemd passes the socket in $NOTIFY_SOCKET: a filesystem path, or `@name` for the abstract namespace.
Without the variable (not under systemd, or `--once`) every call is a no-op, so the daemon never needs to
know whether it runs as a service.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

SEND_TIMEOUT = 0.5
"""Longest a state change (READY, RELOADING, STOPPING) may wait for a receiver whose queue is full."""


def _address(env: Mapping[str, str]) -> str | None:
    raw = env.get("NOTIFY_SOCKET", "")
    if raw.startswith("@"):
        return "\0" + raw[1:]  # abstract namespace: leading NUL instead of '@'
    if raw.startswith("/"):
        return raw
    return None  # unset, or a transport we do not speak (vsock:)


class Notifier:
    """Sends state changes to systemd. Failures are logged, never raised: a lost notification must not
    take the daemon down (systemd times it out or restarts it, which is the right reaction)."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self.address = _address(env)
        self._sock: socket.socket | None = None
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str, wait: float = SEND_TIMEOUT) -> bool:
        """Send one datagram of `KEY=value` lines; True when it was delivered.

        The caller is the event loop, so a receiver that does not read (its queue full) may hold it for at
        most `wait` seconds; with wait=0 the message is dropped at once instead (for repeated ones).
        """
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.settimeout(wait if wait > 0 else 0.0)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except (BlockingIOError, TimeoutError):
            log.debug("sd_notify: the receiver is not reading; dropped %s", lines[0].split("=", 1)[0])
            return False
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC, so systemd (253+) can tell this reload from an older one."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1", wait=0)

    def status(self, text: str) -> bool:
        """STATUS= (one line), sent only when it changed; never waits (the next change is sent anyway)."""
        text = " ".join(text.split())
        if text == self._last_status:
            return False
        sent = self.send(f"STATUS={text}", wait=0)
        self._last_status = text if sent else None
        return sent

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.

    None when no watchdog is configured, or when $WATCHDOG_PID names another process (the variable was
    inherited, not meant for us).
    """
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000
