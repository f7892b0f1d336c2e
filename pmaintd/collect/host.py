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

Cost over SSH: which EDAC and hwmon files exist is discovered once per target (and again after
LAYOUT_TTL_S); a steady poll then reads only the /proc files and the sensor values, together through
pmaintd.collect.files.read_many (one remote command where the transport asks for batching).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pmaintd.collect import CollectError, Collector, Target, register
from pmaintd.collect.files import list_optional, read_many
from pmaintd.collect.hosts import host_targets, transport_of
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
from pmaintd.config import Config
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


@dataclass(frozen=True)
class Sensor:
    """One point a poll reads from sysfs: its measurement and tags, and the file behind each field."""

    measurement: str
    tags: dict[str, str]
    files: dict[str, str]
    """field -> sysfs path of an integer value."""
    scale: float = 1.0
    """Divides every value (hwmon temperatures are in millidegrees)."""


@dataclass(frozen=True)
class Layout:
    """What a machine offers beyond /proc: EDAC and hwmon sensors and whether it keeps utmp.

    Finding it takes a directory listing per controller, row and chip, so it is discovered once and kept
    for LAYOUT_TTL_S; each poll then reads every value in one batch (pmaintd.collect.files.read_many).
    """

    sensors: list[Sensor]
    utmp: bool


LAYOUT_TTL_S = 600.0
"""A hot-added DIMM or a newly loaded sensor driver shows up within this long."""


def _first_line(text: str | None) -> str:
    return text.strip() if text else ""


def _edac_layout(tr: Transport) -> list[Sensor]:
    """EDAC sensors: one per memory controller, csrow and dimm/rank; their labels are fetched in one batch."""
    found: list[tuple[str, dict[str, str], dict[str, str]]] = []  # measurement, tags, files
    label_files: list[str] = []
    for mc in list_optional(tr, EDAC_ROOT):
        if not (mc.startswith("mc") and mc[2:].isdigit()):
            continue
        base = f"{EDAC_ROOT}/{mc}"
        entries = list_optional(tr, base)
        counters = [f for f in ("ce_count", "ue_count", "ce_noinfo_count", "ue_noinfo_count") if f in entries]
        if counters:
            found.append((EDAC, {"controller": mc}, {f: f"{base}/{f}" for f in counters}))
            label_files.append(f"{base}/mc_name")
        for entry in entries:
            sub = f"{base}/{entry}"
            if entry.startswith("csrow") and entry[5:].isdigit():
                names = list_optional(tr, sub)
                row = [n for n in names if n in ("ce_count", "ue_count") or (n[:2] == "ch" and n.endswith("_ce_count"))]
                if row:
                    found.append((EDAC_CSROW, {"controller": mc, "csrow": entry}, {f: f"{sub}/{f}" for f in row}))
            elif entry[:4] in ("dimm", "rank") and entry[4:].isdigit():
                names = list_optional(tr, sub)
                files = {f: f"{sub}/dimm_{f}" for f in ("ce_count", "ue_count") if f"dimm_{f}" in names}
                if files:
                    found.append((EDAC_DIMM, {"controller": mc, "dimm": entry}, files))
                    label_files += [f"{sub}/dimm_label", f"{sub}/dimm_location"]
    labels = read_many(tr, label_files)
    sensors = []
    for measurement, tags, files in found:
        base = f"{EDAC_ROOT}/{tags['controller']}"
        if measurement == EDAC:
            tags = {**tags, "mc_name": _first_line(labels.get(f"{base}/mc_name"))}
        elif measurement == EDAC_DIMM:
            sub = f"{base}/{tags['dimm']}"
            tags = {
                **tags,
                "label": _first_line(labels.get(f"{sub}/dimm_label")),
                "location": _first_line(labels.get(f"{sub}/dimm_location")),
            }
        sensors.append(Sensor(measurement, tags, files))
    return sensors


def _uevent_device(text: str | None) -> str:
    """The device a hwmon chip belongs to (e.g. nvme0, 0000:00:18.3), from its device's uevent."""
    props = dict(line.split("=", 1) for line in (text or "").splitlines() if "=" in line)
    return props.get("DEVNAME") or props.get("PCI_SLOT_NAME") or ""


def _hwmon_layout(tr: Transport) -> list[Sensor]:
    """hwmon temperature sensors (`temp`, Telegraf's naming); static names and labels in one batch."""
    chips: list[tuple[str, str, list[str]]] = []  # chip dir, attribute dir, temp prefixes
    for chip in list_optional(tr, HWMON_ROOT):
        chip_dir = attr_dir = f"{HWMON_ROOT}/{chip}"
        names = list_optional(tr, chip_dir)
        if not any(n.startswith("temp") and n.endswith("_input") for n in names):
            # Older kernels (e.g. CentOS 6/7 drivers) put the attributes under hwmonN/device/.
            attr_dir = f"{chip_dir}/device"
            names = list_optional(tr, attr_dir)
        prefixes = sorted(n.removesuffix("_input") for n in names if n.startswith("temp") and n.endswith("_input"))
        if prefixes:
            chips.append((chip_dir, attr_dir, prefixes))
    static = read_many(
        tr,
        [
            f
            for c, a, ps in chips
            for f in (f"{c}/name", f"{a}/name", f"{c}/device/uevent", *(f"{a}/{p}_label" for p in ps))
        ],
    )
    sensors = []
    for chip_dir, attr_dir, prefixes in chips:
        chip_name = (
            _first_line(static.get(f"{chip_dir}/name") or static.get(f"{attr_dir}/name")) or chip_dir.rsplit("/", 1)[1]
        )
        device = _uevent_device(static.get(f"{chip_dir}/device/uevent"))
        for prefix in prefixes:
            label = _first_line(static.get(f"{attr_dir}/{prefix}_label")).lower().replace(" ", "_")
            tags = {"sensor": f"{chip_name}_{label or prefix}", "device": device}
            sensors.append(Sensor(TEMP, tags, {"temp": f"{attr_dir}/{prefix}_input"}, scale=1000.0))
    return sensors


def discover_layout(tr: Transport) -> Layout:
    """EDAC and hwmon sensors of a machine, and whether it keeps utmp (so `who` means something)."""
    utmp = "utmp" in list_optional(tr, "/run") or "utmp" in list_optional(tr, "/var/run")
    return Layout(_edac_layout(tr) + _hwmon_layout(tr), utmp)


def sensor_points(sensors: list[Sensor], values: dict[str, str], host: str, ts: int) -> list[Point]:
    """Points from one batch of sysfs reads. A value that could not be read (a sensor asleep or gone:
    EAGAIN/EIO/ENODATA) drops that field, and a sensor with no value left drops its point, not the host."""
    points = []
    for s in sensors:
        fields: dict[str, FieldValue] = {}
        for f, path in s.files.items():
            try:
                raw = int(values[path].strip())
            except (KeyError, ValueError):
                continue
            fields[f] = raw / s.scale if s.scale != 1.0 else raw
        if fields:
            points.append(Point(s.measurement, {"host": host, **s.tags}, fields, ts))
    return points


def _n_users(tr: Transport) -> int | None:
    """Logged-in users from `who -q` (called only on machines that keep utmp)."""
    try:
        res = tr.run(["who", "-q"], timeout=5.0)
    except (OSError, TimeoutError):
        return None
    for line in res.stdout.splitlines():
        if line.startswith("# users=") and (n := line.split("=", 1)[1].strip()).isdigit():
            return int(n)
    return None


PROC_FILES = ("/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/uptime", "/proc/vmstat")


def _required(tr: Transport, files: dict[str, str], target: str, path: str) -> str:
    """A /proc file from the batch; when the batch lacks it, read it alone, for its content or its error."""
    text = files.get(path)
    if text:
        return text
    try:
        return tr.read_text(path)
    except OSError as exc:
        raise CollectError(f"{target}: cannot read {path}: {exc}") from None


class HostCollector:
    """Polls cpu, mem, swap, system, edac and temp of each machine target."""

    name = "host"

    def __init__(
        self,
        targets: Sequence[Target],
        first_sample_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`first_sample_s`/`sleep` pace the second /proc/stat read of a first poll (tests pass a fake sleep
        that swaps in a later recording)."""
        self._targets = list(targets)
        self._first_sample_s = first_sample_s
        self._sleep = sleep
        self._last_cpu: dict[str, CpuTimes] = {}
        self._user_hz: dict[str, int] = {}
        self._layouts: dict[str, tuple[float, Layout]] = {}

    def targets(self) -> Sequence[Target]:
        return self._targets

    def collect(self, target: Target) -> list[Point]:
        tr = transport_of(self.name, target)
        layout = self._layout(tr, target.name)
        files = read_many(tr, [*PROC_FILES, *(p for sensor in layout.sensors for p in sensor.files.values())])
        ts = now_ns()
        try:
            cur = parse_stat(_required(tr, files, target.name, "/proc/stat"))
            prev = self._last_cpu.get(target.name)
            if prev is None or prev.boot_time != cur.boot_time:
                # No comparable reading (first poll, or the host rebooted): take a second one shortly after.
                prev = cur
                self._sleep(self._first_sample_s)
                cur = parse_stat(_required(tr, {}, target.name, "/proc/stat"))
            meminfo = parse_meminfo(_required(tr, files, target.name, "/proc/meminfo"))
            load = parse_loadavg(_required(tr, files, target.name, "/proc/loadavg"))
            uptime = parse_uptime(_required(tr, files, target.name, "/proc/uptime"))
            mem = mem_fields(meminfo)
        except ParseError as exc:
            raise CollectError(f"{target.name}: {exc}") from None
        self._last_cpu[target.name] = cur
        host = tr.host
        system: dict[str, FieldValue] = {
            "load1": load[0],
            "load5": load[1],
            "load15": load[2],
            "n_cpus": sum(1 for name in cur.cpus if name != "cpu-total"),
            "uptime": int(uptime),
        }
        if layout.utmp and (users := _n_users(tr)) is not None:
            system["n_users"] = users
        vmstat = parse_vmstat(files["/proc/vmstat"]) if "/proc/vmstat" in files else None
        return [
            *cpu_points(prev, cur, self._hz(tr, target.name), host, ts),
            Point(MEM, {"host": host}, mem, ts),
            Point(SWAP, {"host": host}, swap_fields(meminfo, vmstat), ts),
            Point(SYSTEM, {"host": host}, system, ts),
            *sensor_points(layout.sensors, files, host, ts),
        ]

    def _layout(self, tr: Transport, target: str) -> Layout:
        hit = self._layouts.get(target)
        if hit is not None and time.monotonic() - hit[0] < LAYOUT_TTL_S:
            return hit[1]
        layout = discover_layout(tr)
        self._layouts[target] = (time.monotonic(), layout)
        return layout

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
    return HostCollector(host_targets(cfg, "host", section)) if section.enabled else None
