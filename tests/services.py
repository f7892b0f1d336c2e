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

    def foreign_known_hosts(self, path: Path) -> Path:
        """Write a known_hosts at `path` listing a fresh key, not this server's, for its address: what a
        client sees once the host key changed (or another machine answers on that address)."""
        key = path.with_name(f"{path.name}.foreign_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        kt, pub = Path(f"{key}.pub").read_text().split()[:2]
        path.write_text(f"[127.0.0.1]:{self.port} {kt} {pub}\n")
        return path


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


@dataclass
class Haproxy(Process):
    """HAProxy with one HTTP frontend, one backend of named servers, and the admin runtime API socket."""

    port: int = 0
    socket: Path = field(default_factory=Path)
    backend: str = "be"
    servers: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def runtime(self, command: str) -> str:
        """Send one runtime API command on the stats socket and return the answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()


def start_haproxy(workdir: Path, servers: dict[str, int], backend: str = "be") -> Haproxy:
    """Debian's haproxy on a free loopback port, round-robin over `servers` (name -> loopback port), with
    `stats socket ... level admin` in workdir so the runtime API can drain and re-enable servers."""
    binary = _which("haproxy", "/usr/sbin")
    port = free_port()
    sock = workdir / "admin.sock"
    lines = "\n".join(f"  server {name} 127.0.0.1:{p}" for name, p in servers.items())
    conf = workdir / "haproxy.cfg"
    conf.write_text(
        f"""global
  stats socket {sock} mode 600 level admin
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:{port}
  default_backend {backend}
backend {backend}
  balance roundrobin
{lines}
"""
    )
    check = subprocess.run([binary, "-c", "-f", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise ServiceUnavailable(f"haproxy rejected its config: {check.stderr[-2000:]}")
    log = workdir / "haproxy.log"
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    _wait_port(port, proc, log)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            proc.kill()
            raise ServiceUnavailable("haproxy did not create its stats socket")
        time.sleep(0.05)
    return Haproxy(proc, workdir, port=port, socket=sock, backend=backend, servers=dict(servers))


def _snmp_answers(port: int, community: str, timeout: float = 0.5) -> bool:
    """One SNMPv2c GET of sysObjectID with net-snmp's snmpget: the readiness probe for snmpd and snmpsim."""
    snmpget = _which("snmpget", "/usr/bin")
    r = subprocess.run(
        [snmpget, "-v2c", "-c", community, "-t", str(timeout), "-r", "0", "-On", f"127.0.0.1:{port}",
         "1.3.6.1.2.1.1.2.0"],
        capture_output=True, timeout=timeout + 5, env={**os.environ, "MIBS": ""},
    )
    return r.returncode == 0 and b"1.3.6.1.2.1.1.2.0" in r.stdout


def _wait_snmp(port: int, communities: list[str], proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(communities)
    while pending:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"{proc.args[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if _snmp_answers(port, pending[0]):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            proc.kill()
            raise ServiceUnavailable(f"{proc.args[0]} did not answer SNMP GETs on 127.0.0.1:{port} within {timeout}s")
        time.sleep(0.2)


@dataclass(frozen=True)
class SnmpUser:
    name: str
    auth_protocol: str
    auth_password: str
    priv_protocol: str
    priv_password: str


@dataclass
class Snmpd(Process):
    port: int = 0
    community: str = "public"
    users: list[SnmpUser] = field(default_factory=list)
    sys_name: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


DEFAULT_SNMP_USERS = [
    SnmpUser("pmaintd", "SHA", "auth-pass-1234", "AES", "priv-pass-1234"),
    SnmpUser("pmaintd256", "SHA-256", "auth-pass-2561", "AES-256", "priv-pass-2561"),
    SnmpUser("pmaintdsha1aes256", "SHA", "auth-pass-3333", "AES-256", "priv-pass-3333"),
]


HOSTILE_SYS_NAME = "lab \"sw\" 'a'; $(id) `x` \\ end"
"""snmpd's default sysName: quotes, a command substitution and a backslash, which must arrive as plain data."""


def start_snmpd(workdir: Path, sys_name: str = HOSTILE_SYS_NAME, users: list[SnmpUser] | None = None) -> Snmpd:
    """net-snmp's snmpd on a free loopback UDP port: v1/v2c community `public`, v3 authPriv users."""
    binary = _which("snmpd", "/usr/sbin")
    users = DEFAULT_SNMP_USERS if users is None else users
    port = free_port(socket.SOCK_DGRAM)
    persist = workdir / "persist"
    persist.mkdir()
    lines = [f"agentaddress udp:127.0.0.1:{port}", "rocommunity public 127.0.0.1", f"sysName {sys_name}"]
    for u in users:
        lines += [f"createUser {u.name} {u.auth_protocol} {u.auth_password} {u.priv_protocol} {u.priv_password}",
                  f"rouser {u.name} authpriv"]
    conf = workdir / "snmpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = workdir / "snmpd.log"
    proc = subprocess.Popen(
        [binary, "-f", "-C", "-c", str(conf), "-Lf", str(log), "-I", "-smux,mteTrigger,mteTriggerConf"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(persist)},
    )
    _wait_snmp(port, ["public"], proc, log, timeout=20)
    return Snmpd(proc, workdir, port=port, users=list(users), sys_name=sys_name)


@dataclass
class Snmpsim(Process):
    port: int = 0
    communities: list[str] = field(default_factory=list)
    data_dir: Path = field(default_factory=Path)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_snmpsim(workdir: Path, recordings: list[Path]) -> Snmpsim:
    """snmpsim serving recordings; each one's community is its file name without .snmprec[.bz2].

    Recordings are decompressed first: snmpsim binary-searches the data file for every GETNEXT that does not
    hit an exact OID, and seeking backwards in a .bz2 stream re-reads it from the start (seconds per request).
    """
    import bz2

    binary = _which("snmpsim-command-responder", str(Path(__file__).resolve().parent.parent / ".venv" / "bin"))
    data, cache = workdir / "data", workdir / "cache"
    data.mkdir()
    cache.mkdir()
    communities = []
    for rec in recordings:
        name = rec.name.removesuffix(".bz2").removesuffix(".snmprec")
        raw = bz2.decompress(rec.read_bytes()) if rec.name.endswith(".bz2") else rec.read_bytes()
        (data / f"{name}.snmprec").write_bytes(raw)
        communities.append(name)
    port = free_port(socket.SOCK_DGRAM)
    log = workdir / "snmpsim.log"
    proc = subprocess.Popen(
        [binary, f"--data-dir={data}", f"--cache-dir={cache}", f"--agent-udpv4-endpoint=127.0.0.1:{port}",
         "--logging-method=null"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
    )
    _wait_snmp(port, communities, proc, log, timeout=120)
    return Snmpsim(proc, workdir, port=port, communities=communities, data_dir=data)
