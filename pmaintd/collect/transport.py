"""Transports: how a collector reads files and runs commands on the host it watches.

`local` uses this machine's files and subprocesses; `ssh` (pmaintd.collect.ssh) does the same on a remote
host over one reused paramiko connection. Commands are always argv lists, never shell strings, so names that
come from devices cannot be interpreted by a shell.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class RunResult:
    """What a command printed and how it exited."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@runtime_checkable
class Transport(Protocol):
    host: str
    """The hostname as configured; used as the `host` tag of every point collected through it."""

    def read_text(self, path: str) -> str:
        """Read a (small) text file such as /proc/diskstats. Raises OSError when it cannot."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """Names in a directory (for /sys trees). Raises OSError when it cannot."""
        ...

    def run(self, argv: list[str], timeout: float, privileged: bool = False) -> RunResult:
        """Run a command without a shell. Raises TimeoutError when it outlives `timeout` (and kills it).

        `privileged` marks commands that need root (smartctl): a transport configured with `sudo` runs
        them through `sudo -n`, which fails at once instead of prompting when no NOPASSWD rule allows it.
        """
        ...

    def close(self) -> None: ...


class LocalTransport:
    """This machine: plain file reads and subprocesses."""

    def __init__(self, host: str, sudo: bool = False) -> None:
        self.host = host
        self.sudo = sudo

    def read_text(self, path: str) -> str:
        return Path(path).read_text(errors="replace")

    def list_dir(self, path: str) -> list[str]:
        return sorted(p.name for p in Path(path).iterdir())

    def run(self, argv: list[str], timeout: float, privileged: bool = False) -> RunResult:
        if privileged and self.sudo:
            argv = ["sudo", "-n", *argv]
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{argv[0]} did not finish within {timeout:g}s") from None
        return RunResult(tuple(argv), cp.returncode, cp.stdout, cp.stderr)

    def close(self) -> None:
        return None
