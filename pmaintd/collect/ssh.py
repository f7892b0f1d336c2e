"""The `ssh` transport: a remote host's files and commands over one reused paramiko connection.

Collectors speak argv lists; the remote side needs one command line for the user's login shell. Every
argument is therefore quoted with `shlex.join` (POSIX quoting), so a device name, path or model string that
reaches a command is always one literal argument, never shell syntax. Host-key checking, connect/command
timeouts and the output bound come from pmaintd.ssh.SshClient, which the action executor shares.

Files are read over SFTP on the same connection when the host offers it: a host poll reads a hundred or so
/proc and /sys files, and each remote command costs the login shell's startup (measured 0.45 s per command
against this machine's sshd, whose root shell runs pyenv init; SFTP reads take milliseconds). Without an
sftp subsystem, files are read with `cat -- PATH` and directories listed with `find`.

Errors are split the way collectors need them: a missing or unreadable file or program is an OSError
(collectors treat those as "this host lacks that source" and carry on), while a host that cannot be reached
safely (refused host key, failed authentication, dropped connection) is a CollectError that fails the
whole poll of that host, so it is reported instead of silently producing partial data.
"""

from __future__ import annotations

import errno
import logging
import shlex
import threading
from collections.abc import Callable
from typing import TypeVar

import paramiko

from pmaintd.collect import CollectError
from pmaintd.collect.transport import RunResult
from pmaintd.ssh import DEFAULT_MAX_OUTPUT, HostKeyRejected, SshClient, SshError, SshResult

log = logging.getLogger(__name__)
T = TypeVar("T")

FILE_TIMEOUT = 30.0
"""Reading one /proc or /sys file never legitimately takes long; a stuck NFS path must not hang a poll."""

_ERRNO_BY_MESSAGE = (
    ("No such file or directory", errno.ENOENT),
    ("Permission denied", errno.EACCES),
    ("Is a directory", errno.EISDIR),
    ("Not a directory", errno.ENOTDIR),
)


class SshTransport:
    """A remote host, reached with `client`. `host` is the configured name (the `host` tag)."""

    def __init__(
        self,
        host: str,
        client: SshClient,
        sudo: bool = False,
        max_output: int = DEFAULT_MAX_OUTPUT,
        file_timeout: float = FILE_TIMEOUT,
    ) -> None:
        self.host = host
        self.client = client
        self.sudo = sudo
        self.max_output = max_output
        self.file_timeout = file_timeout
        self._sftp: paramiko.SFTPClient | None = None
        self._no_sftp = False
        self._sftp_lock = threading.Lock()

    @property
    def batch_reads(self) -> bool:
        """True once the host turned out to have no sftp subsystem: every read is then a remote `cat` (a
        login shell each), so pmaintd.collect.files.read_many fetches a poll's files with one command."""
        return self._no_sftp

    def _sftp_session(self) -> paramiko.SFTPClient | None:
        """The SFTP session (reopened after a reconnect), or None when the host has no sftp subsystem."""
        with self._sftp_lock:
            if self._no_sftp:
                return None
            chan = self._sftp.get_channel() if self._sftp is not None else None
            if chan is None or chan.closed:
                try:
                    self._sftp = self.client.open_sftp()
                    self._sftp.get_channel().settimeout(self.file_timeout)  # type: ignore[union-attr]
                except HostKeyRejected as exc:
                    raise CollectError(str(exc)) from None
                except SshError as exc:
                    if "no SFTP subsystem" not in str(exc):
                        raise CollectError(str(exc)) from None
                    log.info("%s: %s; reading files with cat", self.host, exc)
                    self._no_sftp = True
                    return None
            return self._sftp

    def _sftp_call(self, fn: Callable[[paramiko.SFTPClient], T]) -> T | None:
        """Run one SFTP operation; None means "use the shell instead" (no subsystem, or the session broke)."""
        sftp = self._sftp_session()
        if sftp is None:
            return None
        with self._sftp_lock:  # one request at a time on the session
            try:
                return fn(sftp)
            except TimeoutError:
                # A reply may still arrive for the abandoned request: never reuse this session.
                sftp.close()
                self._sftp = None
                raise TimeoutError(f"{self.host}: SFTP read did not finish within {self.file_timeout:g}s") from None
            except (paramiko.SSHException, EOFError) as exc:
                log.debug("%s: SFTP session failed (%s); falling back to the shell for this read", self.host, exc)
                self._sftp = None
                return None

    def _exec(self, argv: list[str], timeout: float) -> SshResult:
        try:
            return self.client.run(shlex.join(argv), timeout=timeout, max_output=self.max_output)
        except SshError as exc:  # includes HostKeyRejected: nothing ran
            raise CollectError(str(exc)) from None

    def read_text(self, path: str) -> str:
        def sftp_read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as f:
                return f.read(self.max_output + 1)

        data = self._sftp_call(sftp_read)  # OSError (missing, denied) propagates as the cat path's would
        if data is not None:
            if len(data) > self.max_output:
                raise OSError(errno.EFBIG, f"{self.host}: {path} is larger than {self.max_output} bytes", path)
            return data.decode(errors="replace")
        r = self._exec(["cat", "--", path], self.file_timeout)
        if r.returncode != 0:
            raise _os_error(self.host, path, r.stderr)
        if r.truncated:
            raise OSError(errno.EFBIG, f"{self.host}: {path} is larger than {self.max_output} bytes", path)
        return r.stdout

    def list_dir(self, path: str) -> list[str]:
        names = self._sftp_call(lambda sftp: sftp.listdir(path))
        if names is not None:
            return sorted(names)
        # NUL-separated names survive any character a file name may hold, newlines included.
        r = self._exec(["find", path, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"], self.file_timeout)
        if r.returncode != 0:
            raise _os_error(self.host, path, r.stderr)
        return sorted(n for n in r.stdout.split("\0") if n)

    def run(self, argv: list[str], timeout: float, privileged: bool = False) -> RunResult:
        full = ["sudo", "-n", *argv] if privileged and self.sudo else list(argv)
        r = self._exec(full, timeout)
        if r.returncode == 127 and ("not found" in r.stderr or "No such file" in r.stderr):
            raise FileNotFoundError(errno.ENOENT, f"{self.host}: {full[0]} not found on the remote PATH", full[0])
        if full[:2] == ["sudo", "-n"] and r.returncode == 1 and "sudo:" in r.stderr and not r.stdout:
            # The caller may have put `sudo -n` in argv itself ([collect.smart] sudo): name the real program.
            prog = full[2] if len(full) > 2 else "sudo"
            raise PermissionError(errno.EPERM, f"{self.host}: sudo -n refused {prog}: {r.stderr.strip()[:200]}", prog)
        return RunResult(tuple(argv), r.returncode, r.stdout, r.stderr)

    def close(self) -> None:
        with self._sftp_lock:
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None
        self.client.close()


def _os_error(host: str, path: str, stderr: str) -> OSError:
    msg = stderr.strip().splitlines()[-1] if stderr.strip() else "failed"
    code = next((c for text, c in _ERRNO_BY_MESSAGE if text in stderr), errno.EIO)
    cls = {errno.ENOENT: FileNotFoundError, errno.EACCES: PermissionError, errno.EISDIR: IsADirectoryError}.get(
        code, OSError
    )
    return cls(code, f"{host}: {msg[:300]}", path)
