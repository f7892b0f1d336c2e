"""What the daemon tests need around a real `pmaintd run` process: systemd's end of the notify socket, the
process itself, its /metrics, and a UDP gate that makes a real SNMP agent unreachable and reachable again."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PMAINTD = Path(sys.executable).with_name("pmaintd")


@dataclass
class Message:
    at: float
    """time.monotonic() when received."""
    fields: dict[str, str]


class NotifySocket:
    """systemd's side of sd_notify(3): a real AF_UNIX datagram socket, abstract (`@name`) or a path."""

    def __init__(self, abstract: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"pmaintd-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:  # a short path: sun_path holds 108 bytes, pytest's tmp paths can be longer
            self._dir = tempfile.mkdtemp(prefix="pmn-", dir="/tmp")
            self.env = f"{self._dir}/notify"
            self.sock.bind(self.env)
        self.messages: list[Message] = []

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return False
        data = self.sock.recv(65536).decode()
        fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
        self.messages.append(Message(time.monotonic(), fields))
        return True

    def drain(self, seconds: float) -> None:
        """Collect messages for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._read(end - time.monotonic())

    def wait_for(self, pred: Callable[[dict[str, str]], bool], timeout: float, after: int = 0) -> Message:
        """The first message at index >= after matching pred, reading more until timeout."""
        end = time.monotonic() + timeout
        i = after
        while True:
            while i < len(self.messages):
                if pred(self.messages[i].fields):
                    return self.messages[i]
                i += 1
            if time.monotonic() >= end:
                seen = [m.fields for m in self.messages[after:]]
                raise AssertionError(f"no matching notify message within {timeout}s; got {seen}")
            self._read(end - time.monotonic())

    def with_key(self, key: str) -> list[Message]:
        """Every message so far (including those still queued in the socket) that sets `key`."""
        while self._read(0):
            pass
        return [m for m in self.messages if key in m.fields]

    def close(self) -> None:
        self.sock.close()
        if self._dir:
            Path(self.env).unlink(missing_ok=True)
            os.rmdir(self._dir)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DaemonProcess:
    """`pmaintd --config C --state-dir S run` as a subprocess, stderr in a file."""

    workdir: Path
    config: str
    notify: NotifySocket | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.config_path = self.workdir / "pmaintd.toml"
        self.state_dir = self.workdir / "state"
        self.stderr_path = self.workdir / f"stderr-{uuid.uuid4().hex[:6]}.log"
        self.write_config(self.config)

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def start(self) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHDOG_", "NOTIFY_SOCKET", "PMAINTD_"))}
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = self.notify.env
        env.update(self.env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(PMAINTD), "--config", str(self.config_path), "--state-dir", str(self.state_dir), "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("wb"),
            env=env,
        )
        return self

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def metrics(listen: str) -> dict[str, float]:
    """Scrape /metrics into {'name{labels}': value} (labels exactly as the exposition prints them)."""
    status, body = http_get(f"http://{listen}/metrics")
    assert status == 200, body
    out = {}
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """One sample by name and a subset of its labels (0 when absent)."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and all(w in rest for w in want):
            return value
    return 0.0


def healthz(listen: str) -> tuple[int, dict[str, object]]:
    status, body = http_get(f"http://{listen}/healthz")
    return status, json.loads(body)


def wait_until(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class UdpGate:
    """A UDP relay in front of a real SNMP agent: closed, it swallows requests (an agent that stopped
    answering, as a dead switch does); open, it forwards them and the agent's answers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open = False
        self._clients: dict[tuple[str, int], socket.socket] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            socks = [self.sock, *self._clients.values()]
            ready, _, _ = select.select(socks, [], [], 0.1)
            for s in ready:
                data, addr = s.recvfrom(65536)
                if s is self.sock:
                    if not self.open:
                        continue
                    up = self._clients.get(addr)
                    if up is None:
                        up = self._clients[addr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.connect(self.upstream)
                    up.send(data)
                else:
                    client = next(a for a, u in self._clients.items() if u is s)
                    if self.open:
                        self.sock.sendto(data, client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for s in self._clients.values():
            s.close()
        self.sock.close()
