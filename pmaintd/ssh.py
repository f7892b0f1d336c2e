"""One SSH connection per host, with strict host-key checking, for collectors and the action executor.

Both `collect` (agentless SMART/diskio/host over SSH) and `act` (running remediation commands) need the same
thing: key authentication, a known_hosts file that is never extended automatically (an unknown or changed host
key is refused before anything runs), timeouts on connect and on every command, and output captured up to a
bound so a runaway command cannot exhaust memory. It lives here, below both, so neither imports the other.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import InvalidHostKey

from pmaintd.config import HostEntry, parse_ssh_address

DEFAULT_MAX_OUTPUT = 1024 * 1024


class SshError(Exception):
    """The command could not be run on the host; the message names the host and the reason."""


class HostKeyRejected(SshError):
    """The host's key is unknown or differs from known_hosts: nothing was run."""


@dataclass(frozen=True)
class SshEndpoint:
    """How to reach one host. `name` is the configured host name, used in messages and tags."""

    name: str
    address: str
    """host:port (port defaults to 22)."""
    user: str
    key_file: Path
    known_hosts: Path
    connect_timeout: float = 10.0

    @property
    def hostport(self) -> tuple[str, int]:
        """The address split exactly as config validation split it (`[2001:db8::1]:22` included)."""
        return parse_ssh_address(self.address)

    @classmethod
    def of_host(cls, h: HostEntry) -> SshEndpoint:
        """The endpoint of a [[hosts]] entry with transport = "ssh" (its validation guarantees every field)."""
        assert h.address and h.user and h.key_file and h.known_hosts, f"[[hosts]] {h.name} is not an ssh host"
        return cls(h.name, h.address, h.user, h.key_file, h.known_hosts, h.connect_timeout)


@dataclass(frozen=True)
class SshResult:
    """What a remote command did; output beyond the capture bound is cut and flagged."""

    returncode: int
    stdout: str
    stderr: str
    truncated: bool
    duration: float


class SshClient:
    """A lazily opened, reused connection to one host. Thread-safe: paramiko multiplexes channels."""

    def __init__(self, endpoint: SshEndpoint) -> None:
        self.endpoint = endpoint
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def _connect(self) -> paramiko.SSHClient:
        ep = self.endpoint
        host, port = ep.hostport
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(ep.known_hosts))
        except OSError as exc:
            raise SshError(f"{ep.name}: cannot read known_hosts {ep.known_hosts}: {exc.strerror}") from None
        except InvalidHostKey as exc:  # a damaged key line; paramiko raises this bare Exception, not SSHException
            raise SshError(f"{ep.name}: known_hosts {ep.known_hosts} has an invalid key: {exc.exc}") from None
        # Never learn keys: an unknown host is refused, exactly like StrictHostKeyChecking=yes.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                host,
                port=port,
                username=ep.user,
                key_filename=str(ep.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=ep.connect_timeout,
                banner_timeout=ep.connect_timeout,
                auth_timeout=ep.connect_timeout,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyRejected(
                f"{ep.name}: host key for {ep.address} CHANGED (got {exc.key.get_name()} "
                f"{exc.key.get_fingerprint().hex()}); refusing to connect. "
                f"Verify the host and update {ep.known_hosts}"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyRejected(
                    f"{ep.name}: host key for {ep.address} is not in {ep.known_hosts}; refusing to connect"
                ) from None
            raise SshError(f"{ep.name}: ssh to {ep.address} failed: {exc}") from None
        except OSError as exc:
            client.close()
            raise SshError(f"{ep.name}: cannot connect to {ep.address}: {exc}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        return client

    def _session(self) -> paramiko.SSHClient:
        with self._lock:
            t = self._client.get_transport() if self._client else None
            if self._client is None or t is None or not t.is_active():
                if self._client is not None:
                    self._client.close()
                self._client = self._connect()
            return self._client

    def run(self, command: str, timeout: float, max_output: int = DEFAULT_MAX_OUTPUT) -> SshResult:
        """Run a shell command line on the host. Callers quote every substituted value (shlex.quote).

        Raises TimeoutError when the command outlives `timeout` (its channel is closed, which ends it with
        SIGHUP on OpenSSH), HostKeyRejected/SshError when the host cannot be reached safely.
        """
        client = self._session()
        start = time.monotonic()
        try:
            chan = client.get_transport().open_session(timeout=self.endpoint.connect_timeout)  # type: ignore[union-attr]
            chan.exec_command(command)
        except (paramiko.SSHException, OSError) as exc:
            self.close()
            raise SshError(f"{self.endpoint.name}: cannot start command: {exc}") from None
        out, err = bytearray(), bytearray()
        truncated = False
        chan.settimeout(0.2)
        try:
            while True:
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"{self.endpoint.name}: command did not finish within {timeout:g}s")
                progressed = False
                for recv, buf in ((chan.recv, out), (chan.recv_stderr, err)):
                    ready = chan.recv_ready() if buf is out else chan.recv_stderr_ready()
                    if ready:
                        data = recv(65536)
                        progressed = True
                        room = max_output - len(buf)
                        if len(data) > room:
                            truncated = True
                        buf += data[: max(room, 0)]
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if not progressed:
                    time.sleep(0.01)
            code = chan.recv_exit_status()
        finally:
            chan.close()
        return SshResult(
            code, out.decode(errors="replace"), err.decode(errors="replace"), truncated, time.monotonic() - start
        )

    def open_sftp(self) -> paramiko.SFTPClient:
        """An SFTP session on the reused connection (reads files without starting a remote shell per file).

        Raises HostKeyRejected/SshError like `run`, and SshError when the host offers no sftp subsystem.
        """
        client = self._session()
        try:
            return client.open_sftp()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(f"{self.endpoint.name}: no SFTP subsystem: {exc or type(exc).__name__}") from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
