"""Pure parsers for the /proc files the local collectors read.

They take the text of a file and return plain numbers, so the same code serves a file read locally, one
fetched over SSH, and a recorded fixture. Formats follow the kernel's documentation:
Documentation/admin-guide/iostats.rst (diskstats), Documentation/filesystems/proc.rst (stat, meminfo,
loadavg, uptime).
"""

from __future__ import annotations

from dataclasses import dataclass

SECTOR_BYTES = 512
"""/proc/diskstats counts 512-byte sectors whatever the device's real sector size (iostats.rst)."""

DISKSTATS_COUNTERS = (
    "reads",
    "merged_reads",
    "read_sectors",
    "read_time",
    "writes",
    "merged_writes",
    "write_sectors",
    "write_time",
    "iops_in_progress",
    "io_time",
    "weighted_io_time",
    # kernel 4.18+
    "discards",
    "merged_discards",
    "discard_sectors",
    "discard_time",
    # kernel 5.5+
    "flushes",
    "flush_time",
)
"""The columns after major, minor and name, in the kernel's order (iostats.rst, fields 1-17)."""


class ParseError(ValueError):
    """A /proc file did not have the documented format; the message names the file and the line."""


@dataclass(frozen=True)
class DiskStats:
    major: int
    minor: int
    name: str
    counters: dict[str, int]
    """Keys from DISKSTATS_COUNTERS, only as many as the kernel printed (11, 15 or 17)."""


def parse_diskstats(text: str) -> list[DiskStats]:
    """Every line of /proc/diskstats. Lines with fewer than 11 counters (kernels before 2.6.25 printed
    4 for partitions) cannot be mapped to Telegraf's fields and raise ParseError."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 14:
            raise ParseError(f"/proc/diskstats line {n}: expected at least 14 columns, got {len(parts)}: {line!r}")
        try:
            nums = [int(p) for p in parts[3 : 3 + len(DISKSTATS_COUNTERS)]]
            major, minor = int(parts[0]), int(parts[1])
        except ValueError:
            raise ParseError(f"/proc/diskstats line {n}: non-numeric counter: {line!r}") from None
        out.append(DiskStats(major, minor, parts[2], dict(zip(DISKSTATS_COUNTERS, nums, strict=False))))
    return out


CPU_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
"""/proc/stat `cpu` line columns, in USER_HZ ticks. `user` includes `guest`, `nice` includes `guest_nice`."""


@dataclass(frozen=True)
class CpuTimes:
    boot_time: int
    """`btime` (seconds since the epoch): changes when the host reboots, which resets every counter."""
    cpus: dict[str, dict[str, int]]
    """'cpu-total' (Telegraf's name for the aggregate line) and 'cpu0', 'cpu1', ... -> state -> ticks."""


def parse_stat(text: str) -> CpuTimes:
    """The cpu lines and btime of /proc/stat. Missing trailing columns (old kernels) count as 0."""
    cpus: dict[str, dict[str, int]] = {}
    btime = 0
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if parts[0].startswith("cpu"):
            try:
                ticks = [int(p) for p in parts[1 : 1 + len(CPU_STATES)]]
            except ValueError:
                raise ParseError(f"/proc/stat line {n}: non-numeric cpu time: {line!r}") from None
            if len(ticks) < 4:
                raise ParseError(f"/proc/stat line {n}: expected at least 4 cpu times: {line!r}")
            ticks += [0] * (len(CPU_STATES) - len(ticks))
            name = "cpu-total" if parts[0] == "cpu" else parts[0]
            cpus[name] = dict(zip(CPU_STATES, ticks, strict=True))
        elif parts[0] == "btime" and len(parts) > 1 and parts[1].isdigit():
            btime = int(parts[1])
    if "cpu-total" not in cpus:
        raise ParseError("/proc/stat has no aggregate 'cpu' line")
    return CpuTimes(btime, cpus)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as key -> value, with `kB` values converted to bytes (HugePages_* stay counts)."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            raise ParseError(f"/proc/meminfo line {n}: expected 'Key: value [kB]': {line!r}")
        value = int(parts[0])
        out[key.strip()] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return out


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages from /proc/loadavg."""
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise ParseError(f"/proc/loadavg: expected three load averages, got {text.strip()!r}") from None


def parse_uptime(text: str) -> float:
    """Seconds since boot, the first number of /proc/uptime."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        raise ParseError(f"/proc/uptime: expected seconds since boot, got {text.strip()!r}") from None


def parse_udev_db(text: str) -> dict[str, str]:
    """udev's database entry for a device (/run/udev/data/bMAJOR:MINOR): its `E:KEY=VALUE` properties.

    This is the file Telegraf's diskio plugin reads for serial numbers and device_tags.
    """
    props = {}
    for line in text.splitlines():
        if line.startswith("E:") and "=" in line:
            key, _, value = line[2:].partition("=")
            props[key] = value
    return props
