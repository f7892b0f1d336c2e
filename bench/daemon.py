"""Daemon benchmark: steady-state RSS and CPU of `pmaintd run` polling 1,000 SNMP agents and 100 SSH hosts.

The agents are real-device recordings served by one snmpsim (tests/collect/snmp/testdata, community = the
recording's name, so the 1,000 targets cycle through 5 device types); the hosts are 100 [[hosts]] entries
on one loopback OpenSSH server (each its own SSH connection, collecting `host` and `diskio` through it).
Everything is polled every `--interval` seconds (60 s) with `[daemon] jitter` equal to the interval, so the
polls spread over the interval as a fleet's would. The daemon's store is the embedded sqlite file.

The reference, measured in the same run, is the same daemon polling only this machine (host and diskio),
so the difference is what the fleet costs. For each, after one full interval of warm-up, the daemon's RSS
and CPU time are sampled every second for `--measure` seconds; it prints the median and max RSS, CPU as a
percentage of one core, the polls that succeeded and failed in the window (from its /metrics), and the CPU
snmpsim and sshd used (the agents' side, for context: on these 2-core machines they compete with it).
Usage: .venv/bin/python bench/daemon.py [--snmp 1000] [--ssh 100] [--interval 60] [--measure 120]
Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon.harness import DaemonProcess, NotifySocket, metrics  # noqa: E402
from tests.services import Snmpsim, Sshd, start_snmpsim, start_sshd  # noqa: E402

RECORDINGS = sorted((ROOT / "tests" / "collect" / "snmp" / "testdata").glob("*.snmprec*"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(listen: str, interval: int, snmp: int, ssh: int, sim: Snmpsim | None, sshd: Sshd | None) -> str:
    lines = [
        "[collect.host]",
        f'interval = "{interval}s"',
        "[collect.diskio]",
        f'interval = "{interval}s"',
        "[collect.smart]",
        "enabled = false",
        "[daemon]",
        f'listen = "{listen}"',
        f'jitter = "{interval}s"',
        'log_level = "warning"',
        "[snmp]",
        f'interval = "{interval}s"',
        'timeout = "2s"',
        "retries = 1",
        "concurrency = 64",
    ]
    for i in range(snmp):
        assert sim is not None
        lines += [
            "[[snmp.targets]]",
            f'name = "sw{i:04d}"',
            f'address = "{sim.address}"',
            f'community = "{sim.communities[i % len(sim.communities)]}"',
        ]
    for i in range(ssh):
        assert sshd is not None
        lines += [
            "[[hosts]]",
            f'name = "ssh{i:03d}"',
            f'address = "{sshd.address}"',
            f'user = "{sshd.user}"',
            f'key_file = "{sshd.client_key}"',
            f'known_hosts = "{sshd.known_hosts}"',
            'collect = ["host", "diskio"]',
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Figures:
    rss_median_mb: float
    rss_max_mb: float
    cpu_pct: float
    polls: dict[tuple[str, bool], float]
    agents_cpu_pct: float
    load: float

    @property
    def ok(self) -> float:
        return sum(v for (_c, good), v in self.polls.items() if good)

    @property
    def failed(self) -> float:
        return sum(v for (_c, good), v in self.polls.items() if not good)


def polls(listen: str) -> dict[tuple[str, bool], float]:
    """Polls so far per (collector, succeeded)."""
    out: dict[tuple[str, bool], float] = {}
    for key, value in metrics(listen).items():
        if key.startswith("pmaintd_collect_runs_total{"):
            collector = key.split('collector="', 1)[1].split('"', 1)[0]
            k = (collector, 'outcome="ok"' in key)
            out[k] = out.get(k, 0.0) + value
    return out


def tree_cpu(roots: list[psutil.Process]) -> float:
    """CPU seconds of these processes and their live children (sshd forks one per connection)."""
    total = 0.0
    for r in roots:
        for p in [r, *r.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(p.cpu_times()[:2])
    return total


def measure(
    workdir: Path, cfg: str, listen: str, interval: int, window: int, agents: list[psutil.Process]
) -> tuple[Figures, str]:
    notify = NotifySocket()
    d = DaemonProcess(workdir, cfg, notify).start()
    try:
        notify.wait_for(lambda f: f.get("READY") == "1", 300)
        time.sleep(interval + 5)  # one full interval: every target polled once, connections open
        proc = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
        polls0 = polls(listen)
        cpu0 = sum(proc.cpu_times()[:2])
        agents0 = tree_cpu(agents)
        t0 = time.monotonic()
        rss = []
        while time.monotonic() - t0 < window:
            rss.append(proc.memory_info().rss / 2**20)
            time.sleep(1.0)
        elapsed = time.monotonic() - t0
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        agents_cpu = tree_cpu(agents) - agents0
        polls1 = polls(listen)
        d.signal(signal.SIGTERM)
        d.wait(30)
        fig = Figures(
            statistics.median(rss),
            max(rss),
            100 * cpu / elapsed,
            {k: v - polls0.get(k, 0.0) for k, v in polls1.items()},
            100 * agents_cpu / elapsed,
            os.getloadavg()[0],
        )
        return fig, d.stderr
    finally:
        d.kill()
        notify.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--snmp", type=int, default=1000, help="SNMP agents (snmpsim targets)")
    ap.add_argument("--ssh", type=int, default=100, help="SSH hosts (on one loopback sshd)")
    ap.add_argument("--interval", type=int, default=60, help="poll interval of every target, seconds")
    ap.add_argument("--measure", type=int, default=120, help="measurement window after warm-up, seconds")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="pmaintd-bench-") as tmp:
        root = Path(tmp)
        (root / "sim").mkdir()
        (root / "sshd").mkdir()
        sim = start_snmpsim(root / "sim", RECORDINGS)
        sshd = start_sshd(root / "sshd")
        agents = [psutil.Process(sim.proc.pid), psutil.Process(sshd.proc.pid)]
        try:
            listen = f"127.0.0.1:{free_port()}"
            (root / "ref").mkdir()
            ref, _ = measure(
                root / "ref", config(listen, args.interval, 0, 0, None, None), listen, args.interval, args.measure, []
            )
            (root / "fleet").mkdir()
            fleet_cfg = config(listen, args.interval, args.snmp, args.ssh, sim, sshd)
            fleet, log = measure(root / "fleet", fleet_cfg, listen, args.interval, args.measure, agents)
        finally:
            sim.stop()
            sshd.stop()

    targets = args.snmp + args.ssh
    print(f"pmaintd run, {args.snmp} SNMP agents + {args.ssh} SSH hosts (host+diskio) every {args.interval}s;")
    print(f"steady state over {args.measure}s after {args.interval}s warm-up (sqlite store), {os.cpu_count()} cores")
    print(f"{'':30}{'RSS median':>11}{'RSS max':>10}{'CPU':>9}{'polls ok':>10}{'failed':>8}{'load avg':>10}")
    for name, f in (("reference: this machine only", ref), (f"fleet: {targets} targets", fleet)):
        print(
            f"{name:30}{f.rss_median_mb:>9.1f}MB{f.rss_max_mb:>8.1f}MB{f.cpu_pct:>8.2f}%"
            f"{f.ok:>10.0f}{f.failed:>8.0f}{f.load:>10.1f}"
        )
    extra_rss = (fleet.rss_median_mb - ref.rss_median_mb) * 1024 / targets
    print(
        f"fleet - reference: {fleet.rss_median_mb - ref.rss_median_mb:.1f} MB RSS ({extra_rss:.0f} KB per target), "
        f"{fleet.cpu_pct - ref.cpu_pct:.1f}% of one core"
    )
    if fleet.ok:
        ms = 10 * (fleet.cpu_pct - ref.cpu_pct) * args.measure / fleet.ok
        print(f"daemon CPU per successful poll: {ms:.0f} ms (all collectors together)")
    expected = (args.snmp + 2 * args.ssh + 2) * args.measure / args.interval
    by = ", ".join(
        f"{c} {fleet.polls.get((c, True), 0):.0f} ok / {fleet.polls.get((c, False), 0):.0f} failed"
        for c in sorted({c for c, _ in fleet.polls})
    )
    print(f"polls in the window: {by} (one interval's worth: ~{expected:.0f})")
    print(f"agents' side (snmpsim, sshd and its per-connection processes): {fleet.agents_cpu_pct:.1f}% of one core")
    errors = [line for line in log.splitlines() if "is failing" in line][:3]
    if errors:
        print("first failures logged by the daemon:")
        for line in errors:
            print("  " + line[:200])


if __name__ == "__main__":
    main()
