"""The `ssh` transport: a remote host's files and commands over one reused paramiko connection.

Collectors speak argv lists; the remote side needs one command line for the user's login shell. Every
argument is therefore quoted with `shlex.join` (POSIX quoting), so a device name, path or model string that
reaches a command is always one literal argument, never shell syntax. Host-key checking, connect/command
timeouts and the output bound come from pmaintd.ssh.SshClient, which the action executor shares.

Errors are split the way collectors need them: a missing or unreadable file or program is an OSError
(collectors treat those as "this host lacks that source" and carry on), while a host that cannot be reached
safely (refused host key, failed authentication, dropped connection) is a CollectError that fails the
whole poll of that host, so it is reported instead of silently producing partial data.
"""

from __future__ import annotations

import errno
import shlex

from pmaintd.collect import CollectError
from pmaintd.collect.transport import RunResult
from pmaintd.ssh import DEFAULT_MAX_OUTPUT, SshClient, SshError, SshResult

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

    def __init__(self, host: str, client: SshClient, sudo: bool = False, max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        self.host = host
        self.client = client
        self.sudo = sudo
        self.max_output = max_output

    def _exec(self, argv: list[str], timeout: float) -> SshResult:
        try:
            return self.client.run(shlex.join(argv), timeout=timeout, max_output=self.max_output)
        except SshError as exc:  # includes HostKeyRejected: nothing ran
            raise CollectError(str(exc)) from None

    def read_text(self, path: str) -> str:
        r = self._exec(["cat", "--", path], FILE_TIMEOUT)
        if r.returncode != 0:
            raise _os_error(self.host, path, r.stderr)
        if r.truncated:
            raise OSError(errno.EFBIG, f"{self.host}: {path} is larger than {self.max_output} bytes", path)
        return r.stdout

    def list_dir(self, path: str) -> list[str]:
        # NUL-separated names survive any character a file name may hold, newlines included.
        r = self._exec(["find", path, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"], FILE_TIMEOUT)
        if r.returncode != 0:
            raise _os_error(self.host, path, r.stderr)
        return sorted(n for n in r.stdout.split("\0") if n)

    def run(self, argv: list[str], timeout: float, privileged: bool = False) -> RunResult:
        full = ["sudo", "-n", *argv] if privileged and self.sudo else list(argv)
        r = self._exec(full, timeout)
        if r.returncode == 127 and ("not found" in r.stderr or "No such file" in r.stderr):
            raise FileNotFoundError(errno.ENOENT, f"{self.host}: {full[0]} not found on the remote PATH", full[0])
        if full[0] == "sudo" and r.returncode == 1 and "sudo:" in r.stderr and not r.stdout:
            raise PermissionError(
                errno.EPERM, f"{self.host}: sudo -n refused {argv[0]}: {r.stderr.strip()[:200]}", argv[0]
            )
        return RunResult(tuple(argv), r.returncode, r.stdout, r.stderr)

    def close(self) -> None:
        self.client.close()


def _os_error(host: str, path: str, stderr: str) -> OSError:
    msg = stderr.strip().splitlines()[-1] if stderr.strip() else "failed"
    code = next((c for text, c in _ERRNO_BY_MESSAGE if text in stderr), errno.EIO)
    cls = {errno.ENOENT: FileNotFoundError, errno.EACCES: PermissionError, errno.EISDIR: IsADirectoryError}.get(
        code, OSError
    )
    return cls(code, f"{host}: {msg[:300]}", path)
