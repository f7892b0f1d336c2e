"""Start real services on free loopback ports in a temp dir, and stop them by PID.

Recipes follow ../shared/TESTING.md. Each `start_*` raises ServiceUnavailable (with the reason) when the
binary is missing or the service does not come up, so fixtures can skip or fail with a clear message.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class ServiceUnavailable(Exception):
    pass


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None
    )
    if not path:
        raise ServiceUnavailable(f"{name} is not installed (run scripts/install-test-deps.sh)")
    return path


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"{proc.args[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise ServiceUnavailable(f"{proc.args[0]} did not listen on 127.0.0.1:{port} within {timeout}s")


@dataclass
class Process:
    proc: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Influxd(Process):
    port: int = 0
    database: str = "pmaintd"
    config_path: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, q: str, db: str | None = None) -> dict:
        """Run InfluxQL on /query and return the decoded JSON."""
        import json

        params = {"q": q, "db": db or self.database, "epoch": "ns"}
        with urllib.request.urlopen(f"{self.url}/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
            return json.loads(r.read())

    def restart(self) -> None:
        """Start influxd again on the same port and data dir (after stop() or kill())."""
        log = self.workdir / "influxd.log"
        self.proc = subprocess.Popen(
            [self.proc.args[0], "-config", str(self.config_path)],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, self.proc, log)


def start_influxd(workdir: Path, database: str = "pmaintd") -> Influxd:
    """InfluxDB 1.x (Debian's `influxdb`), HTTP on a free port, data in workdir."""
    binary = _which("influxd", "/usr/bin")
    port, rpc = free_port(), free_port()
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[ifql]
  enabled = false
[monitor]
  store-enabled = false
"""
    )
    log = workdir / "influxd.log"
    proc = subprocess.Popen(
        [binary, "-config", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    _wait_port(port, proc, log)
    srv = Influxd(proc, workdir, port=port, database=database, config_path=conf)
    deadline = time.monotonic() + 10
    while True:
        try:
            req = urllib.request.Request(
                f"{srv.url}/query", data=urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
            )
            urllib.request.urlopen(req, timeout=5).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                srv.stop()
                raise ServiceUnavailable("influxd did not accept CREATE DATABASE") from None
            time.sleep(0.1)
    return srv


@dataclass
class Sshd(Process):
    port: int = 0
    user: str = "root"
    client_key: Path = field(default_factory=Path)
    """Private key (OpenSSH format, ed25519) the server accepts."""
    known_hosts: Path = field(default_factory=Path)
    """known_hosts with the server's real host key for [127.0.0.1]:port."""
    host_key_pub: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_sshd(workdir: Path) -> Sshd:
    """OpenSSH server on a free loopback port with its own host key; key auth only."""
    binary = _which("sshd", "/usr/sbin")
    keygen = _which("ssh-keygen", "/usr/bin")
    os.makedirs("/run/sshd", exist_ok=True)
    host_key = workdir / "host_ed25519"
    client_key = workdir / "client_ed25519"
    for k in (host_key, client_key):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    auth = workdir / "authorized_keys"
    auth.write_text((workdir / "client_ed25519.pub").read_text())
    port = free_port()
    conf = workdir / "sshd_config"
    conf.write_text(
        f"""ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {auth}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
MaxSessions 100
MaxStartups 200
Subsystem sftp internal-sftp
"""
    )
    log = workdir / "sshd.log"
    proc = subprocess.Popen(
        [binary, "-D", "-e", "-f", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    _wait_port(port, proc, log)
    host_pub = (workdir / "host_ed25519.pub").read_text().split()
    known = workdir / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    import getpass

    return Sshd(
        proc,
        workdir,
        port=port,
        user=getpass.getuser(),
        client_key=client_key,
        known_hosts=known,
        host_key_pub=f"{host_pub[0]} {host_pub[1]}",
    )
