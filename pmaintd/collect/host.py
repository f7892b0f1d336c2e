"""The `host` collector: CPU, memory, load, EDAC memory errors and hardware temperatures of each machine.

Everything is read from /proc and /sys through the target's transport (never psutil, which only sees the
local machine), so the same code serves this machine and, over SSH, a remote one. Names follow Telegraf:

* `cpu` (inputs.cpu, tag `cpu` = cpu0, cpu1, ..., cpu-total): `time_*` counters in seconds (collect_cpu_time,
  report_active), and `usage_*` percentages (user, system, idle, nice, iowait, irq, softirq, steal, guest,
  guest_nice, active) over the interval since this target's previous poll, computed exactly as Telegraf does:
  100 * delta(state) / delta(user+nice+system+idle+iowait+irq+softirq+steal), with guest subtracted from
  user and guest_nice from nice (the kernel counts them in both). On a target's first poll, and after a
  reboot (btime changed), /proc/stat is read twice `first_sample_s` apart so even `collect --once` reports
  usage. A CPU whose counters went backwards (hot-unplug) gets no usage fields that poll.
* `mem` (inputs.mem, Linux fields), computed like Telegraf's gopsutil: cached = Cached + SReclaimable,
  used = total - free - buffered - cached, available = MemAvailable (else cached + free).
* `swap` (inputs.swap): total, used, free, used_percent, and in/out (bytes, from pswpin/pswpout).
* `system` (inputs.system): load1, load5, load15, n_cpus (online CPUs), uptime (s), n_users (when the
  machine keeps utmp).
* `edac` (tags `controller`, `mc_name`), `edac_csrow` (tags `controller`, `csrow`) and `edac_dimm` (tags
  `controller`, `dimm`, `label`, `location`): fields `ce_count`, `ue_count` (corrected / uncorrected memory
  errors, raw counters; `edac` also has the `*_noinfo_count`s and `edac_csrow` per-channel `chN_ce_count`),
  from /sys/devices/system/edac/mc (Documentation/ABI/testing/sysfs-devices-edac). Telegraf has no EDAC
  input; names follow the kernel's.
* `temp` (inputs.temp, metric_format v2): tag `sensor` = `<chip>_<label>` (label lowercased, spaces as `_`),
  `device` where the chip's device names one; field `temp` in °C, from /sys/class/hwmon
  (Documentation/hwmon/sysfs-interface.rst). A sensor without a label is `<chip>_tempN` (Telegraf would
  give every unlabeled sensor of a chip the same name).

EDAC and hwmon are optional: a machine without them (most VMs) gets no such points and no error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pmaintd.collect import CollectError, Collector, Target, register
from pmaintd.collect.hosts import host_targets
from pmaintd.collect.procfs import (
    CPU_STATES,
    CpuTimes,
    ParseError,
    parse_loadavg,
    parse_meminfo,
    parse_stat,
    parse_uptime,
)
from pmaintd.collect.transport import Transport
from pmaintd.config import Config, HostConfig
from pmaintd.telemetry import CPU, MEM, SYSTEM, FieldValue, Point, now_ns

log = logging.getLogger(__name__)

SWAP = "swap"
EDAC = "edac"
EDAC_CSROW = "edac_csrow"
EDAC_DIMM = "edac_dimm"
TEMP = "temp"

EDAC_ROOT = "/sys/devices/system/edac/mc"
HWMON_ROOT = "/sys/class/hwmon"
DEFAULT_USER_HZ = 100
"""USER_HZ, the unit of /proc/stat, is 100 on every mainstream Linux architecture; `getconf CLK_TCK` on the
target overrides it when it can run."""
SWAP_PAGE_BYTES = 4096
"""/proc/vmstat counts swapped pages; Telegraf (gopsutil) converts them with 4 KiB, and so do we."""

_BUSY = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
"""The states that add up to elapsed CPU time (guest and guest_nice are already inside user and nice)."""

# Telegraf's mem field -> /proc/meminfo key. Missing keys report 0, as Telegraf does, so every host has
# the same fields.
_MEMINFO_FIELDS = {
    "active": "Active",
    "commit_limit": "CommitLimit",
    "committed_as": "Committed_AS",
    "dirty": "Dirty",
    "high_free": "HighFree",
    "high_total": "HighTotal",
    "huge_pages_free": "HugePages_Free",
    "huge_page_size": "Hugepagesize",
    "huge_pages_total": "HugePages_Total",
    "inactive": "Inactive",
    "low_free": "LowFree",
    "low_total": "LowTotal",
    "mapped": "Mapped",
    "page_tables": "PageTables",
    "shared": "Shmem",
    "slab": "Slab",
    "sreclaimable": "SReclaimable",
    "sunreclaim": "SUnreclaim",
    "swap_cached": "SwapCached",
    "swap_free": "SwapFree",
    "swap_total": "SwapTotal",
    "vmalloc_chunk": "VmallocChunk",
    "vmalloc_total": "VmallocTotal",
    "vmalloc_used": "VmallocUsed",
    "write_back": "Writeback",
    "write_back_tmp": "WritebackTmp",
}


def cpu_usage(prev: dict[str, int], cur: dict[str, int]) -> dict[str, float]:
    """Telegraf's usage_* percentages between two readings of one CPU; empty when they cannot be compared."""
    d = {s: cur[s] - prev[s] for s in CPU_STATES}
    total = sum(d[s] for s in _BUSY)
    if total <= 0 or any(v < 0 for v in d.values()):
        return {}
    out = {
        "usage_user": d["user"] - d["guest"],
        "usage_nice": d["nice"] - d["guest_nice"],
        **{f"usage_{s}": d[s] for s in CPU_STATES if s not in ("user", "nice")},
        "usage_active": total - d["idle"],
    }
    return {k: 100.0 * v / total for k, v in out.items()}


def cpu_points(prev: CpuTimes | None, cur: CpuTimes, user_hz: int, host: str, ts: int) -> list[Point]:
    """One `cpu` point per CPU and for cpu-total: time_* counters, and usage_* when `prev` is comparable."""
    points = []
    for name, ticks in cur.cpus.items():
        fields: dict[str, FieldValue] = {f"time_{s}": ticks[s] / user_hz for s in CPU_STATES}
        fields["time_active"] = sum(ticks[s] for s in _BUSY if s != "idle") / user_hz
        before = prev.cpus.get(name) if prev is not None else None
        if before is not None:
            fields |= cpu_usage(before, ticks)
        points.append(Point(CPU, {"cpu": name, "host": host}, fields, ts))
    return points


def mem_fields(meminfo: dict[str, int]) -> dict[str, FieldValue]:
    """Telegraf's Linux `mem` fields from parsed /proc/meminfo (bytes, except the huge page counts)."""
    try:
        total = meminfo["MemTotal"]
        free = meminfo["MemFree"]
    except KeyError as exc:
        raise ParseError(f"/proc/meminfo has no {exc.args[0]} line") from None
    buffered = meminfo.get("Buffers", 0)
    cached = meminfo.get("Cached", 0) + meminfo.get("SReclaimable", 0)
    available = meminfo.get("MemAvailable", cached + free)
    used = total - free - buffered - cached
    fields: dict[str, FieldValue] = {
        "total": total,
        "free": free,
        "buffered": buffered,
        "cached": cached,
        "available": available,
        "used": used,
        "used_percent": 100.0 * used / total if total else 0.0,
        "available_percent": 100.0 * available / total if total else 0.0,
    }
    fields |= {name: meminfo.get(key, 0) for name, key in _MEMINFO_FIELDS.items()}
    return fields


def swap_fields(meminfo: dict[str, int], vmstat: dict[str, int] | None) -> dict[str, FieldValue]:
    """Telegraf's `swap` fields; in/out only when /proc/vmstat could be read."""
    total = meminfo.get("SwapTotal", 0)
    free = meminfo.get("SwapFree", 0)
    fields: dict[str, FieldValue] = {
        "total": total,
        "free": free,
        "used": total - free,
        "used_percent": 100.0 * (total - free) / total if total else 0.0,
    }
    if vmstat is not None:
        fields["in"] = vmstat.get("pswpin", 0) * SWAP_PAGE_BYTES
        fields["out"] = vmstat.get("pswpout", 0) * SWAP_PAGE_BYTES
    return fields


def parse_vmstat(text: str) -> dict[str, int]:
    """/proc/vmstat: `name value` per line."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _read(tr: Transport, target: str, path: str) -> str:
    try:
        return tr.read_text(path)
    except OSError as exc:
        raise CollectError(f"{target}: cannot read {path}: {exc}") from None


def _optional(tr: Transport, path: str) -> str | None:
    try:
        return tr.read_text(path)
    except OSError:
        return None


def _optional_int(tr: Transport, path: str) -> int | None:
    text = _optional(tr, path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _list(tr: Transport, path: str) -> list[str]:
    try:
        return tr.list_dir(path)
    except OSError:
        return []


def edac_points(tr: Transport, host: str, ts: int) -> list[Point]:
    """Memory-controller error counters from EDAC sysfs; none when the machine has no EDAC driver."""
    points = []
    for mc in _list(tr, EDAC_ROOT):
        if not (mc.startswith("mc") and mc[2:].isdigit()):
            continue
        base = f"{EDAC_ROOT}/{mc}"
        fields = {
            f: v
            for f in ("ce_count", "ue_count", "ce_noinfo_count", "ue_noinfo_count")
            if (v := _optional_int(tr, f"{base}/{f}")) is not None
        }
        mc_name = (_optional(tr, f"{base}/mc_name") or "").strip()
        if fields:
            points.append(Point(EDAC, {"host": host, "controller": mc, "mc_name": mc_name}, fields, ts))
        for entry in _list(tr, base):
            sub = f"{base}/{entry}"
            if entry.startswith("csrow") and entry[5:].isdigit():
                names = _list(tr, sub)
                wanted = ["ce_count", "ue_count"] + [n for n in names if n.startswith("ch") and n.endswith("_ce_count")]
                row = {f: v for f in wanted if (v := _optional_int(tr, f"{sub}/{f}")) is not None}
                if row:
                    points.append(Point(EDAC_CSROW, {"host": host, "controller": mc, "csrow": entry}, row, ts))
            elif (entry.startswith("dimm") and entry[4:].isdigit()) or (
                entry.startswith("rank") and entry[4:].isdigit()
            ):
                dimm = {
                    f: v for f in ("ce_count", "ue_count") if (v := _optional_int(tr, f"{sub}/dimm_{f}")) is not None
                }
                if dimm:
                    tags = {
                        "host": host,
                        "controller": mc,
                        "dimm": entry,
                        "label": (_optional(tr, f"{sub}/dimm_label") or "").strip(),
                        "location": (_optional(tr, f"{sub}/dimm_location") or "").strip(),
                    }
                    points.append(Point(EDAC_DIMM, tags, dimm, ts))
    return points


def _hwmon_device(tr: Transport, chip_dir: str) -> str | None:
    """The device a hwmon chip belongs to (e.g. nvme0, 0000:00:18.3), from its device's uevent."""
    text = _optional(tr, f"{chip_dir}/device/uevent")
    if not text:
        return None
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return props.get("DEVNAME") or props.get("PCI_SLOT_NAME") or None


def temp_points(tr: Transport, host: str, ts: int) -> list[Point]:
    """hwmon temperature sensors in °C; none when the machine exposes no hwmon chip."""
    points = []
    for chip in _list(tr, HWMON_ROOT):
        chip_dir = f"{HWMON_ROOT}/{chip}"
        names = _list(tr, chip_dir)
        attr_dir = chip_dir
        if not any(n.startswith("temp") and n.endswith("_input") for n in names):
            # Older kernels (e.g. CentOS 6/7 drivers) put the attributes under hwmonN/device/.
            attr_dir = f"{chip_dir}/device"
            names = _list(tr, attr_dir)
        chip_name = (_optional(tr, f"{chip_dir}/name") or _optional(tr, f"{attr_dir}/name") or chip).strip()
        device = _hwmon_device(tr, chip_dir)
        for n in sorted(names):
            if not (n.startswith("temp") and n.endswith("_input")):
                continue
            prefix = n.removesuffix("_input")
            milli = _optional_int(tr, f"{attr_dir}/{n}")
            if milli is None:  # sensor asleep or gone (EAGAIN/EIO/ENODATA): skip it, not the host
                continue
            label = (_optional(tr, f"{attr_dir}/{prefix}_label") or "").strip().lower().replace(" ", "_")
            tags = {"host": host, "sensor": f"{chip_name}_{label or prefix}", "device": device or ""}
            points.append(Point(TEMP, tags, {"temp": milli / 1000.0}, ts))
    return points


def _n_users(tr: Transport) -> int | None:
    """Logged-in users from `who -q`, only when the machine keeps utmp (otherwise `who` would say 0)."""
    if "utmp" not in _list(tr, "/run") and "utmp" not in _list(tr, "/var/run"):
        return None
    try:
        res = tr.run(["who", "-q"], timeout=5.0)
    except (OSError, TimeoutError):
        return None
    for line in res.stdout.splitlines():
        if line.startswith("# users="):
            return int(line.split("=", 1)[1])
    return None


class HostCollector:
    """Polls cpu, mem, swap, system, edac and temp of each machine target."""

    name = "host"

    def __init__(
        self,
        section: HostConfig,
        targets: Sequence[Target],
        first_sample_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._targets = list(targets)
        self._first_sample_s = first_sample_s
        self._sleep = sleep
        self._last_cpu: dict[str, CpuTimes] = {}
        self._user_hz: dict[str, int] = {}

    def targets(self) -> Sequence[Target]:
        return self._targets

    def collect(self, target: Target) -> list[Point]:
        tr = target.transport
        if tr is None:
            raise CollectError(f"host target {target.name} has no transport")
        try:
            prev, cur = self._cpu_times(tr, target.name)
            ts = now_ns()
            meminfo = parse_meminfo(_read(tr, target.name, "/proc/meminfo"))
            load = parse_loadavg(_read(tr, target.name, "/proc/loadavg"))
            uptime = parse_uptime(_read(tr, target.name, "/proc/uptime"))
            mem = mem_fields(meminfo)
        except ParseError as exc:
            raise CollectError(f"{target.name}: {exc}") from None
        vmstat_text = _optional(tr, "/proc/vmstat")
        host = tr.host
        system: dict[str, FieldValue] = {
            "load1": load[0],
            "load5": load[1],
            "load15": load[2],
            "n_cpus": sum(1 for name in cur.cpus if name != "cpu-total"),
            "uptime": int(uptime),
        }
        if (users := _n_users(tr)) is not None:
            system["n_users"] = users
        return [
            *cpu_points(prev, cur, self._hz(tr, target.name), host, ts),
            Point(MEM, {"host": host}, mem, ts),
            Point(SWAP, {"host": host}, swap_fields(meminfo, parse_vmstat(vmstat_text) if vmstat_text else None), ts),
            Point(SYSTEM, {"host": host}, system, ts),
            *edac_points(tr, host, ts),
            *temp_points(tr, host, ts),
        ]

    def _cpu_times(self, tr: Transport, target: str) -> tuple[CpuTimes, CpuTimes]:
        """(previous, current) /proc/stat readings; a fresh pair `first_sample_s` apart when there is no
        comparable previous one (first poll, or the host rebooted since)."""
        cur = parse_stat(_read(tr, target, "/proc/stat"))
        prev = self._last_cpu.get(target)
        if prev is None or prev.boot_time != cur.boot_time:
            prev = cur
            self._sleep(self._first_sample_s)
            cur = parse_stat(_read(tr, target, "/proc/stat"))
        self._last_cpu[target] = cur
        return prev, cur

    def _hz(self, tr: Transport, target: str) -> int:
        hz = self._user_hz.get(target)
        if hz is None:
            hz = DEFAULT_USER_HZ
            try:
                res = tr.run(["getconf", "CLK_TCK"], timeout=5.0)
                if res.returncode == 0 and res.stdout.strip().isdigit() and int(res.stdout) > 0:
                    hz = int(res.stdout)
            except (OSError, TimeoutError) as exc:
                log.debug("%s: getconf CLK_TCK failed (%s); assuming USER_HZ=%d", target, exc, hz)
            self._user_hz[target] = hz
        return hz


@register("host")
def _factory(cfg: Config) -> Collector | None:
    section = cfg.collect.host
    # This machine plus every [[hosts]] entry that lists "host" (over SSH or locally).
    return HostCollector(section, host_targets(cfg, "host", section)) if section.enabled else None
