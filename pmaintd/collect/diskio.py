"""The `diskio` collector: /proc/diskstats with Telegraf's inputs.diskio names and units.

Measurement `diskio`, one point per block device, counters raw (rates are a feature-time concern):
reads, writes, merged_reads, merged_writes (operations); read_bytes, write_bytes (bytes: sectors * 512);
read_time, write_time, io_time, weighted_io_time (ms); iops_in_progress (gauge); and where the kernel
reports them (4.18+ / 5.5+) discards, merged_discards, discard_bytes, discard_time, flushes, flush_time.

Tags: `name` (kernel name) and `host`; whole disks also carry their identity, because a device name moves
between boots and a disk is identified by serial or WWN:
  `serial`     Telegraf's diskio tag: udev's ID_SERIAL (model_serial), else the bare serial from sysfs;
  `serial_no`  the bare serial as smartctl reports it (udev ID_SERIAL_SHORT, else sysfs), matching
               `smart_device.serial_no` so diskio and SMART join on the same entity;
  `wwn`        the World Wide Name as Telegraf's smart plugin writes it (hex, no `0x`/`naa.` prefix).
Partitions carry no identity tags: their I/O is part of their disk's, and a naive group-by on serial
would otherwise count it twice. Identity is read from udev's database and sysfs through the transport
(so it works over SSH too) and cached for `IDENTITY_TTL_S` per device.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Sequence

from pmaintd.collect import CollectError, Collector, Target, register
from pmaintd.collect.files import read_many
from pmaintd.collect.hosts import host_targets, transport_of
from pmaintd.collect.procfs import SECTOR_BYTES, DiskStats, ParseError, parse_diskstats, parse_udev_db
from pmaintd.collect.transport import Transport
from pmaintd.config import Config, DiskioConfig
from pmaintd.telemetry import DISKIO, FieldValue, Point, device_text, now_ns

log = logging.getLogger(__name__)

IDENTITY_TTL_S = 600.0
"""How long a device's serial/WWN is trusted before it is read again (a hot-swap reuses the name)."""

_VIRTUAL_RE = re.compile(r"^(loop|ram|zram)\d+$")
"""Devices with no hardware behind them: nothing there can fail the way a disk does."""

_SECTOR_FIELDS = {  # every other diskstats counter keeps its name (see procfs.DISKSTATS_COUNTERS)
    "read_sectors": "read_bytes",
    "write_sectors": "write_bytes",
    "discard_sectors": "discard_bytes",
}


def diskio_fields(counters: dict[str, int]) -> dict[str, FieldValue]:
    """Telegraf's field names for one diskstats line; sector counts become bytes."""
    out: dict[str, FieldValue] = {}
    for key, value in counters.items():
        if key in _SECTOR_FIELDS:
            out[_SECTOR_FIELDS[key]] = value * SECTOR_BYTES
        else:
            out[key] = value
    return out


def normalize_wwn(raw: str | None) -> str | None:
    """A WWN as smartctl/Telegraf print it: `0x5000c500a1b2c3d4` and `naa.5000c500a1b2c3d4` both become
    `5000c500a1b2c3d4`; an NVMe `eui.` id is kept with its prefix; anything else (t10 vendor strings) is no WWN."""
    if not raw:
        return None
    w = raw.strip().lower()
    for prefix in ("0x", "naa."):
        if w.startswith(prefix):
            w = w[len(prefix) :]
            return w if re.fullmatch(r"[0-9a-f]{16}|[0-9a-f]{32}", w) else None
    if re.fullmatch(r"eui\.[0-9a-f]{16}|eui\.[0-9a-f]{32}", w):
        return w
    return None


def identity_files(d: DiskStats) -> list[str]:
    """Where a whole disk's serial and WWN may be found: udev's database entry, then sysfs."""
    sysfs = f"/sys/block/{d.name}"
    return [
        f"/run/udev/data/b{d.major}:{d.minor}",
        f"{sysfs}/device/serial",
        f"{sysfs}/serial",
        f"{sysfs}/device/wwid",
        f"{sysfs}/wwid",
    ]


def disk_identity(d: DiskStats, files: dict[str, str]) -> dict[str, str]:
    """serial / serial_no / wwn of a whole disk from its identity_files (as read); empty when unknown."""
    udev, dev_serial, serial, dev_wwid, wwid = identity_files(d)
    props = parse_udev_db(files[udev]) if udev in files else {}
    short = props.get("ID_SERIAL_SHORT")
    serial_no = device_text(short) or device_text(files.get(dev_serial)) or device_text(files.get(serial))
    wwn = normalize_wwn(props.get("ID_WWN")) or normalize_wwn(files.get(dev_wwid)) or normalize_wwn(files.get(wwid))
    tags = {"serial": device_text(props.get("ID_SERIAL")) or serial_no, "serial_no": serial_no, "wwn": wwn}
    return {k: v for k, v in tags.items() if v}


class DiskioCollector:
    """Polls /proc/diskstats of each machine target.

    Per target it remembers which names are whole disks (/sys/block, listed again when diskstats shows a
    name it has not seen or after IDENTITY_TTL_S) and each disk's identity (read for all new disks in one
    batch), so a steady poll reads /proc/diskstats and nothing else.
    """

    name = "diskio"

    def __init__(self, section: DiskioConfig, targets: Sequence[Target]) -> None:
        self._section = section
        self._targets = list(targets)
        self._disks: dict[str, tuple[float, set[str], set[str]]] = {}  # target -> (when, seen, whole disks)
        self._identity: dict[tuple[str, str, int, int], tuple[float, dict[str, str]]] = {}

    def targets(self) -> Sequence[Target]:
        return self._targets

    def wanted(self, name: str) -> bool:
        """The `devices` globs (empty = all) and `skip_virtual` (loop, ram, zram) applied to a kernel name."""
        if self._section.skip_virtual and _VIRTUAL_RE.match(name):
            return False
        return not self._section.devices or any(fnmatch.fnmatchcase(name, g) for g in self._section.devices)

    def collect(self, target: Target) -> list[Point]:
        tr = transport_of(self.name, target)
        try:
            text = tr.read_text("/proc/diskstats")
        except OSError as exc:
            raise CollectError(f"{target.name}: cannot read /proc/diskstats: {exc}") from None
        try:
            stats = [d for d in parse_diskstats(text) if self.wanted(d.name)]
        except ParseError as exc:
            raise CollectError(f"{target.name}: {exc}") from None
        ts = now_ns()
        whole = self._whole_disks(tr, target.name, {d.name for d in stats})
        identities = self._identities(tr, target.name, [d for d in stats if d.name in whole])
        points = []
        for d in stats:
            tags = {"name": d.name, "host": tr.host, **identities.get(d.name, {})}
            points.append(Point(DISKIO, tags, diskio_fields(d.counters), ts))
        return points

    def _whole_disks(self, tr: Transport, target: str, names: set[str]) -> set[str]:
        # /sys/block lists whole disks only; everything else in diskstats is a partition.
        hit = self._disks.get(target)
        if hit is not None and names <= hit[1] and time.monotonic() - hit[0] < IDENTITY_TTL_S:
            return hit[2]
        try:
            whole = set(tr.list_dir("/sys/block"))
        except OSError as exc:
            log.debug("%s: cannot list /sys/block (%s); no disk identity tags this poll", target, exc)
            return set()
        self._disks[target] = (time.monotonic(), names, whole)
        return whole

    def _identities(self, tr: Transport, target: str, disks: list[DiskStats]) -> dict[str, dict[str, str]]:
        now = time.monotonic()
        out: dict[str, dict[str, str]] = {}
        stale = []
        for d in disks:
            hit = self._identity.get((target, d.name, d.major, d.minor))
            if hit is not None and now - hit[0] < IDENTITY_TTL_S:
                out[d.name] = hit[1]
            else:
                stale.append(d)
        if stale:
            files = read_many(tr, [f for d in stale for f in identity_files(d)])
            for d in stale:
                out[d.name] = disk_identity(d, files)
                self._identity[(target, d.name, d.major, d.minor)] = (now, out[d.name])
        return out


@register("diskio")
def _factory(cfg: Config) -> Collector | None:
    section = cfg.collect.diskio
    # This machine plus every [[hosts]] entry that lists "diskio" (over SSH or locally).
    return DiskioCollector(section, host_targets(cfg, "diskio", section)) if section.enabled else None
