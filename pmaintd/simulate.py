"""A fleet simulator for demos and end-to-end tests: never a basis for an accuracy claim.

It writes Telegraf-schema telemetry for N hosts, their disks and their uplinks, with failure precursors
shaped after published field studies, and the matching incidents:

- hosts: correctable ECC errors that rise in the days before a DRAM-related crash (Schroeder, Pinheiro &
  Weber, "DRAM Errors in the Wild", SIGMETRICS 2009: CEs strongly predict later uncorrectable errors), and a
  memory leak that drives `mem.used_percent` towards OOM;
- links: rising CRC/input errors and falling optical receive power before a link goes down (Meza et al., "A
  Large Scale Study of Data Center Network Reliability", IMC 2018; Zhuo et al., "Understanding and mitigating
  packet corruption in data center networks", SIGCOMM 2017);
- disks: growth of reallocated and pending sectors before failure (Pinheiro et al., FAST 2007; Backblaze).

Healthy entities get the same kinds of noise at lower rates (a few stray CEs, background CRC errors, a daily
and weekly load cycle), so that a model must learn the trend, not the mere presence of a signal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pmaintd.forecast.labels import Incident
from pmaintd.telemetry import Point

NS = 1_000_000_000


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate."""

    hosts: int = 20
    disks_per_host: int = 2
    days: float = 14.0
    step_s: int = 300
    host_failure_fraction: float = 0.25
    link_failure_fraction: float = 0.25
    disk_failure_fraction: float = 0.1
    precursor_hours: float = 48.0
    seed: int = 0
    failure_window: tuple[float, float] = (1 / 3, 0.95)
    """Failures fall uniformly in this part of the span (fractions), so each has precursor history."""


def _failure_times(
    rng: np.random.Generator, n: int, fraction: float, start: int, end: int, window: tuple[float, float]
) -> list[int | None]:
    span = end - start
    lo, hi = window
    out: list[int | None] = []
    for _ in range(n):
        if rng.random() < fraction:
            out.append(int(start + span * (lo + rng.random() * (hi - lo))))
        else:
            out.append(None)
    return out


def _ramp(t: int, fail: int | None, hours: float) -> float:
    """0 far from the failure, rising to 1 at it (exponential onset), 0 for healthy entities."""
    if fail is None or t >= fail:
        return 0.0
    lead = (fail - t) / (3600 * NS)
    return math.exp(-lead / (hours / 3)) if lead < hours else 0.0


def simulate(spec: FleetSpec, start_ns: int) -> tuple[Iterator[list[Point]], list[Incident]]:
    """Telemetry as batches (one per time step) and the failures that the telemetry leads up to.

    A failed host stops reporting after its failure; a failed link reports ifOperStatus=2 (down) while
    admin-up; a failed disk disappears. Everything is deterministic for a given spec.
    """
    rng = np.random.default_rng(spec.seed)
    steps = int(spec.days * 86400 // spec.step_s)
    end = start_ns + steps * spec.step_s * NS
    hosts = [f"sim-host-{i:03d}" for i in range(spec.hosts)]
    links = [f"sim-sw-{i // 24:02d}/Ethernet{i % 24 + 1}" for i in range(spec.hosts)]
    disks = [(h, f"SIM{i:03d}D{d}") for i, h in enumerate(hosts) for d in range(spec.disks_per_host)]
    host_fail = _failure_times(rng, len(hosts), spec.host_failure_fraction, start_ns, end, spec.failure_window)
    link_fail = _failure_times(rng, len(links), spec.link_failure_fraction, start_ns, end, spec.failure_window)
    disk_fail = _failure_times(rng, len(disks), spec.disk_failure_fraction, start_ns, end, spec.failure_window)
    causes = ["dram_uncorrectable" if rng.random() < 0.6 else "oom" for _ in hosts]
    failures = [Incident(t, "host", h, causes[i]) for i, (h, t) in enumerate(zip(hosts, host_fail, strict=True)) if t]
    failures += [Incident(t, "network", ln, "link_down") for ln, t in zip(links, link_fail, strict=True) if t]
    # A disk that would fail after its host has failed is never seen failing: it goes with the host.
    host_fail_of = dict(zip(hosts, host_fail, strict=True))
    disk_fail = [
        None if t is None or (host_fail_of[h] is not None and host_fail_of[h] <= t) else t
        for (h, _s), t in zip(disks, disk_fail, strict=True)
    ]
    failures += [Incident(t, "disk", s, "disk_failed") for (_h, s), t in zip(disks, disk_fail, strict=True) if t]
    seed = spec.seed

    def batches() -> Iterator[list[Point]]:
        r = np.random.default_rng(seed + 1)
        ce = np.zeros(len(hosts))
        leak = r.uniform(35, 55, len(hosts))
        in_err = np.zeros(len(links))
        octets = np.zeros(len(links))
        realloc = np.zeros(len(disks))
        busy = np.zeros(len(disks))
        weighted = np.zeros(len(disks))
        pending = np.zeros(len(disks))
        rx_base = r.uniform(-4.0, -2.0, len(links))
        for k in range(steps):
            t = start_ns + k * spec.step_s * NS
            hour = (t // (3600 * NS)) % 24
            weekday = (t // (86400 * NS)) % 7
            load = 0.35 + 0.25 * math.sin((hour - 8) / 24 * 2 * math.pi) - (0.1 if weekday >= 5 else 0.0)
            out: list[Point] = []
            for i, h in enumerate(hosts):
                if host_fail[i] is not None and t >= host_fail[i]:
                    continue
                ramp = _ramp(t, host_fail[i], spec.precursor_hours)
                ce[i] += r.poisson(0.002 + (40 * ramp if causes[i] == "dram_uncorrectable" else 0.0))
                mem = leak[i] + r.normal(0, 1.5) + (55 * ramp if causes[i] == "oom" else 0.0)
                usage = min(100.0, max(0.0, 100 * load + r.normal(0, 5)))
                tags = {"host": h}
                out.append(
                    Point(
                        "cpu",
                        tags | {"cpu": "cpu-total"},
                        {"usage_idle": 100 - usage, "usage_user": usage * 0.7, "usage_system": usage * 0.3},
                        t,
                    )
                )
                out.append(
                    Point("mem", tags, {"used_percent": min(mem, 99.5), "available_percent": 100 - min(mem, 99.5)}, t)
                )
                out.append(Point("system", tags, {"load1": 8 * load + r.normal(0, 0.3), "n_cpus": 8}, t))
                out.append(
                    Point(
                        "edac",
                        tags | {"controller": "mc0", "mc_name": "sim"},
                        {"ce_count": int(ce[i]), "ue_count": 0},
                        t,
                    )
                )
            for j, ln in enumerate(links):
                dev, ifname = ln.split("/", 1)
                down = link_fail[j] is not None and t >= link_fail[j]
                ramp = _ramp(t, link_fail[j], spec.precursor_hours)
                in_err[j] += r.poisson(0.05 + 500 * ramp)
                octets[j] += 0 if down else r.uniform(0.5, 1.5) * 1e9 * load
                tags = {"source": dev, "sysName": dev, "ifName": ifname, "ifDescr": ifname, "ifIndex": str(j % 24 + 1)}
                out.append(
                    Point(
                        "interface",
                        tags,
                        {
                            "ifHCInOctets": int(octets[j]),
                            "ifHCOutOctets": int(octets[j] * 0.8),
                            "ifInErrors": int(in_err[j]),
                            "ifOutErrors": 0,
                            "ifInDiscards": 0,
                            "ifOutDiscards": 0,
                            "ifOperStatus": 2 if down else 1,
                            "ifAdminStatus": 1,
                            "ifHighSpeed": 10000,
                            "ifHCInUcastPkts": int(octets[j] / 800),
                            # sysUpTime ticks (1/100 s) of the last state change: the failure, or boot.
                            "ifLastChange": int((link_fail[j] - start_ns) // (NS // 100)) if down else 0,
                        },
                        t,
                    )
                )
                rx = rx_base[j] - 8 * ramp + r.normal(0, 0.05) - (30 if down else 0)
                out.append(
                    Point(
                        "snmp_sensor",
                        {
                            "source": dev,
                            "sysName": dev,
                            "sensor": f"{ifname} Rx Power",
                            "sensor_type": "dBm",
                            "ifName": ifname,
                        },
                        {"reading": rx},
                        t,
                    )
                )
            if k % max(1, 3600 // spec.step_s) == 0:  # SMART hourly, as smartd-like polling would
                for d, (h, serial) in enumerate(disks):
                    hf = host_fail_of[h]
                    if (disk_fail[d] is not None and t >= disk_fail[d]) or (hf is not None and t >= hf):
                        continue
                    ramp = _ramp(t, disk_fail[d], spec.precursor_hours * 3)
                    realloc[d] += r.poisson(0.0005 + 20 * ramp)
                    pending[d] += r.poisson(0.0002 + 8 * ramp)
                    # Busy time grows with load; a failing disk retries, so each I/O waits longer.
                    busy[d] += 3600_000 * min(1.0, 0.3 * load + 0.5 * ramp)
                    weighted[d] += 3600_000 * min(4.0, 0.4 * load + 3 * ramp)
                    out.append(
                        Point(
                            "diskio",
                            {"host": h, "name": f"sd{chr(97 + d % 4)}", "serial_no": serial},
                            {"io_time": int(busy[d]), "weighted_io_time": int(weighted[d])},
                            t,
                        )
                    )
                    out.append(
                        Point(
                            "smart_device",
                            {"host": h, "device": f"sd{chr(97 + d % 4)}", "model": "SIM-HDD 4TB", "serial_no": serial},
                            {
                                "health_ok": True,
                                "temp_c": int(35 + 5 * load + r.normal(0, 1)),
                                "reallocated_sectors_count": int(realloc[d]),
                                "pending_sector_count": int(pending[d]),
                                "udma_crc_errors": 0,
                                "power_on_hours": 20000 + (t - start_ns) // (3600 * NS),
                            },
                            t,
                        )
                    )
            yield out

    return batches(), sorted(failures, key=lambda f: f.time)
