"""Run an action's (already quoted) command line on its host with `bash -c`: locally, or over SSH.

Every outcome is data, never an exception: a refused host key, a connection failure or a timeout becomes an
ExecResult with `error` set, so the engine can record the action as failed with the reason. Output is
captured up to a bound (a runaway command cannot exhaust memory) and the cut is flagged.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from pmaintd.config import HostEntry
from pmaintd.ssh import HostKeyRejected, SshClient, SshEndpoint, SshError

log = logging.getLogger(__name__)

MAX_OUTPUT = 64 * 1024
"""Bytes of stdout and of stderr kept per command (the audit log stores them)."""


@dataclass(frozen=True)
class ExecResult:
    """How one command ended; the engine turns it into the action's next state and its audit record."""

    returncode: int | None
    """None when the command did not run to completion (see `error`)."""
    stdout: str
    stderr: str
    truncated: bool
    duration: float
    error: str | None = None
    """Why the command did not run or did not finish: host key refused, unreachable, timed out."""
    ran: bool = True
    """False when nothing was started on the host at all (e.g. host key refused)."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0

    def describe(self) -> str:
        if self.error:
            return self.error
        return f"exit status {self.returncode}" + (" (output truncated)" if self.truncated else "")


def _drain(stream: IO[bytes], buf: bytearray, cut: list[bool], limit: int) -> None:
    while chunk := stream.read(65536):
        room = limit - len(buf)
        if len(chunk) > room:
            cut[0] = True
        buf += chunk[: max(room, 0)]
    stream.close()


def run_local(
    command: str, timeout: float, max_output: int = MAX_OUTPUT, on_start: Callable[[int], None] | None = None
) -> ExecResult:
    """`bash -c COMMAND` in its own process group (killed as a whole on timeout); output bounded."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            ["bash", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return ExecResult(None, "", "", False, 0.0, f"cannot start bash: {exc.strerror}", ran=False)
    if on_start is not None:
        try:
            on_start(proc.pid)
        except BaseException:
            # Not recorded, the command could never be found by crash recovery (and nothing reads its pipes):
            # end it now rather than leave it running behind an action reported as failed.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    out, err, cut = bytearray(), bytearray(), [False]
    readers = [
        threading.Thread(target=_drain, args=(s, b, cut, max_output), daemon=True)
        for s, b in ((proc.stdout, out), (proc.stderr, err))
    ]
    for t in readers:
        t.start()
    error = None
    try:
        code: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code, error = None, f"timed out after {timeout:g}s (process group killed)"
    for t in readers:
        t.join(2.0)
    return ExecResult(code, out.decode(errors="replace"), err.decode(errors="replace"), cut[0],
                      time.monotonic() - start, error)  # fmt: skip


class Executor:
    """Runs commands on configured hosts; one reused SSH connection per host for the executor's lifetime."""

    def __init__(self, hosts: Iterable[HostEntry]) -> None:
        self.hosts = {h.name: h for h in hosts}
        self._clients: dict[str, SshClient] = {}

    def run(
        self, run_on: str, command: str, timeout: float, on_start: Callable[[int], None] | None = None
    ) -> ExecResult:
        """Run on "local" or a [[hosts]] name. `on_start` gets the local child's pid (for crash recovery).

        Never raises: an unexpected error (a paramiko bug, a vanished channel) is an outcome too, because an
        exception here would leave the action `running` under a live owner, where recovery cannot reach it.
        """
        try:
            return self._run(run_on, command, timeout, on_start)
        except Exception as exc:
            log.exception("executor error on %s", run_on)
            self._drop(run_on)
            return ExecResult(None, "", "", False, 0.0, f"executor error on {run_on}: {exc!r}")

    def _drop(self, run_on: str) -> None:
        client = self._clients.pop(run_on, None)
        if client is not None:
            client.close()

    def _run(self, run_on: str, command: str, timeout: float, on_start: Callable[[int], None] | None) -> ExecResult:
        host = self.hosts.get(run_on)
        if run_on == "local" or (host is not None and host.transport == "local"):
            return run_local(command, timeout, on_start=on_start)
        if host is None:
            return ExecResult(None, "", "", False, 0.0, f"run_on {run_on!r} is not a configured host", ran=False)
        client = self._client(host)
        start = time.monotonic()
        # Closing an SSH channel does not end a command without a tty, so the host enforces the timeout itself:
        # coreutils timeout(1) signals the command's whole process group (TERM, then KILL 5 s later). The
        # client-side bound is a backstop for a host that cannot even do that.
        remote = f"timeout -k 5 {timeout:g} bash -c {shlex.quote(command)}"
        try:
            r = client.run(remote, timeout=timeout + 15, max_output=MAX_OUTPUT)
        except HostKeyRejected as exc:
            return ExecResult(None, "", "", False, time.monotonic() - start, f"host key refused: {exc}", ran=False)
        except TimeoutError as exc:
            client.close()
            return ExecResult(None, "", "", False, time.monotonic() - start, str(exc))
        except SshError as exc:
            return ExecResult(None, "", "", False, time.monotonic() - start, str(exc), ran=False)
        if r.returncode in (124, 137) and r.duration >= timeout:
            error = f"timed out after {timeout:g}s (ended on {host.name} by timeout(1))"
            return ExecResult(None, r.stdout, r.stderr, r.truncated, r.duration, error)
        return ExecResult(r.returncode, r.stdout, r.stderr, r.truncated, r.duration)

    def _client(self, host: HostEntry) -> SshClient:
        if host.name not in self._clients:
            self._clients[host.name] = SshClient(SshEndpoint.of_host(host))
        return self._clients[host.name]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
