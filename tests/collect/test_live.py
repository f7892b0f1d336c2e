"""The collectors on this machine, through the real LocalTransport: invariants any Linux host satisfies."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pmaintd.collect.diskio import DiskioCollector
from pmaintd.collect.host import HostCollector
from pmaintd.collect.hosts import host_targets
from pmaintd.collect.targets import local_hostname
from pmaintd.config import Config, DiskioConfig, HostConfig


def test_live_diskio_counts_are_sane_and_monotonic() -> None:
    section = DiskioConfig(skip_virtual=False)
    c = DiskioCollector(section, host_targets(Config(), "diskio", section))
    (target,) = c.targets()
    first = {p.tags["name"]: p for p in c.collect(target)}
    kernel_names = {line.split()[2] for line in Path("/proc/diskstats").read_text().splitlines() if line.strip()}
    assert set(first) == kernel_names
    for name, p in first.items():
        assert p.measurement == "diskio" and p.tags["host"] == local_hostname()
        assert p.fields["read_bytes"] % 512 == 0 and p.fields["write_bytes"] % 512 == 0, name  # type: ignore[operator]
        assert all(isinstance(v, int) and v >= 0 for v in p.fields.values()), name
    os.sync()  # make the kernel write something between the two readings
    second = {p.tags["name"]: p for p in c.collect(target)}
    for name in first.keys() & second.keys():
        for field in ("reads", "writes", "read_bytes", "write_bytes", "io_time"):
            assert second[name].fields[field] >= first[name].fields[field], (name, field)  # type: ignore[operator]


def test_live_host_invariants() -> None:
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        time.sleep(s)

    c = HostCollector(host_targets(Config(), "host", HostConfig()), first_sample_s=0.3, sleep=sleep)
    (target,) = c.targets()
    points = c.collect(target)
    assert slept == [0.3]
    total = next(p for p in points if p.measurement == "cpu" and p.tags["cpu"] == "cpu-total")
    usage = {k: v for k, v in total.fields.items() if k.startswith("usage_")}
    assert usage, "a first poll must still report usage (two readings)"
    assert all(0.0 <= v <= 100.0 for v in usage.values())  # type: ignore[operator]
    assert sum(v for k, v in usage.items() if k != "usage_active") == pytest.approx(100.0)  # type: ignore[misc]
    mem = next(p for p in points if p.measurement == "mem").fields
    assert 0 < mem["available"] <= mem["total"] and 0 <= mem["used"] <= mem["total"]  # type: ignore[operator]
    system = next(p for p in points if p.measurement == "system").fields
    assert system["n_cpus"] == len(os.sched_getaffinity(0)) or system["n_cpus"] == os.cpu_count()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(system["uptime"] - uptime) < 5  # type: ignore[operator]
    has_edac = Path("/sys/devices/system/edac/mc").is_dir() and any(
        d.name.startswith("mc") for d in Path("/sys/devices/system/edac/mc").iterdir()
    )
    assert any(p.measurement == "edac" for p in points) == has_edac
    has_hwmon_temps = Path("/sys/class/hwmon").is_dir() and any(Path("/sys/class/hwmon").glob("hwmon*/temp*_input"))
    assert any(p.measurement == "temp" for p in points) == has_hwmon_temps
    c.collect(target)
    assert slept == [0.3], "the second poll compares with the first and does not sample twice"
