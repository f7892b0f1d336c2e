"""The `smart` collector: smartctl on each host (locally or over SSH), parsed into Telegraf's points.

Per host and poll: find the disks (`smartctl --scan-open`, plus /sys/class/nvme for smartctl builds whose
scan misses NVMe, plus [[collect.smart.devices]], whose `type` also overrides what the scan guessed), then
query at most `concurrency` disks at once, each with its own timeout, with `smartctl --json=o -a -n MODE`.
`--json=o` returns smartctl's JSON and its text output in one run: the text goes through pySMART and the JSON
completes it (smart_parse). smartctl older than 7.0 rejects --json; that host is then queried in text.

A disk in standby (per `nocheck`) is skipped without waking it. A disk that fails (timeout, unreadable
output) is logged and skipped; the poll of the host fails only when every disk failed, so one bad disk never
hides the others. Device names, models and serials come from the host and are only ever passed as single
quoted arguments or stored as tag values.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pmaintd.collect import CollectError, Collector, Target, register
from pmaintd.collect.hosts import host_targets, transport_of
from pmaintd.collect.smart_parse import METRIC_FIELDS, SmartParseError, SmartReport, parse, parse_scan
from pmaintd.collect.transport import RunResult, Transport
from pmaintd.telemetry import SMART_ATTRIBUTE, SMART_DEVICE, Point, now_ns

if TYPE_CHECKING:
    from pmaintd.config import Config, SmartConfig

log = logging.getLogger(__name__)

_STANDBY = re.compile(r"Device is in (STANDBY|SLEEP|IDLE\w*) mode", re.I)
_NO_JSON = "UNRECOGNIZED OPTION"
DISCOVERY_TIMEOUT = 60.0
"""--scan-open opens every disk once; give it longer than one disk's query."""


@dataclass(frozen=True)
class Disk:
    """A disk to query: the device argument and the smartctl -d type (None: smartctl decides)."""

    name: str
    type: str | None = None

    @property
    def key(self) -> str:
        """Disks behind one controller device (megaraid,N) share a name; the port tells them apart."""
        return f"{self.name} {self.type}" if self.type and "," in self.type else self.name

    @property
    def tag(self) -> str:
        """The `device` tag: the name without /dev/, plus the -d port for disks behind one controller device
        (megaraid,N / cciss,N / sat+megaraid,N), which share a device name."""
        base = self.name.removeprefix("/dev/")
        return f"{base}:{self.type}" if self.type and "," in self.type else base


class SmartCollector:
    """Collects `smart_device` and `smart_attribute` points from every disk of each target host."""

    name = "smart"

    def __init__(self, section: SmartConfig, targets: Sequence[Target]) -> None:
        self.section = section
        self._targets = list(targets)
        self._text_only: set[str] = set()
        self._failing: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def targets(self) -> Sequence[Target]:
        return self._targets

    def collect(self, target: Target) -> list[Point]:
        tr = transport_of(self.name, target)
        disks = self.discover(tr)
        if not disks:
            return []
        workers = min(self.section.concurrency, len(disks))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"smart-{target.name}") as pool:
            results = list(pool.map(lambda d: self._query(tr, d), disks))
        points: list[Point] = []
        errors: list[str] = []
        for disk, res in zip(disks, results, strict=True):
            self._note(target.name, disk.tag, res if isinstance(res, str) else None)
            if isinstance(res, str):
                errors.append(f"{disk.name}: {res}")
            elif res is not None:
                report, exit_status = res
                points.extend(report_points(report, tr.host, disk.tag, exit_status))
        if errors and len(errors) == len(disks):
            raise CollectError(f"smart {target.name}: no disk could be read ({'; '.join(errors)[:500]})")
        return points

    def _note(self, host: str, disk: str, error: str | None) -> None:
        """Log a disk's failure when it starts (or its reason changes) and when it recovers, not every poll."""
        key = (host, disk)
        with self._lock:
            before = self._failing.get(key)
            if error is None:
                self._failing.pop(key, None)
            else:
                self._failing[key] = error
        if error is not None and error != before:
            log.warning("smart %s %s: %s", host, disk, error)
        elif error is None and before is not None:
            log.info("smart %s %s: readable again", host, disk)

    def discover(self, tr: Transport) -> list[Disk]:
        """The disks to query on this host, in a stable order, explicit types overriding scanned ones."""
        found: dict[str, Disk] = {}
        if self.section.scan:
            try:
                r = self._smartctl(tr, ["--scan-open"], DISCOVERY_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise CollectError(f"smart {tr.host}: cannot run {self.section.smartctl} --scan-open: {exc}") from None
            scanned = parse_scan(r.stdout)
            failed = [ln.partition("#")[2].strip() for ln in r.stdout.splitlines() if "open failed" in ln]
            if failed and not scanned and not self.section.devices:
                # e.g. not root: every disk is listed as "open failed: Permission denied"
                raise CollectError(
                    f"smart {tr.host}: no disk could be opened ({failed[0][:200]}); pmaintd needs root for "
                    "smartctl, or sudo = true with a NOPASSWD rule"
                )
            for name, dtype in scanned:
                if name.startswith("-"):
                    log.warning("smart %s: ignoring scanned device name %r", tr.host, name)
                    continue
                found.setdefault(Disk(name, dtype).key, Disk(name, dtype))
            try:
                for ctrl in tr.list_dir("/sys/class/nvme"):
                    if re.fullmatch(r"nvme\d+", ctrl):
                        found.setdefault(f"/dev/{ctrl}", Disk(f"/dev/{ctrl}", "nvme"))
            except OSError:
                pass  # no NVMe controllers (or no sysfs): nothing to add
        for d in self.section.devices:
            disk = Disk(d.name, d.type)
            if d.type is None and disk.key in found:
                continue  # listed without a type: the scan's type stands
            found[disk.key] = disk
        return list(found.values())

    def _smartctl(self, tr: Transport, args: list[str], timeout: float) -> RunResult:
        """smartctl needs root: [collect.smart] sudo wraps it in `sudo -n` on every host; otherwise it is run
        as privileged, which the transport wraps where its [[hosts]] entry has sudo = true."""
        argv = [self.section.smartctl, *args]
        if self.section.sudo:
            return tr.run(["sudo", "-n", *argv], timeout)
        return tr.run(argv, timeout, privileged=True)

    def _query(self, tr: Transport, disk: Disk) -> tuple[SmartReport, int] | str | None:
        """One disk: (report, smartctl exit status), None when it is asleep, or an error message."""
        dtype = ["-d", disk.type] if disk.type else []
        base = ["-a", "-n", self.section.nocheck, *dtype, disk.name]
        try:
            with self._lock:
                text_only = tr.host in self._text_only
            r = self._smartctl(tr, base if text_only else ["--json=o", *base], self.section.timeout)
            if not text_only and _NO_JSON in r.stdout + r.stderr and "json" in (r.stdout + r.stderr).lower():
                with self._lock:
                    self._text_only.add(tr.host)
                log.info("smart %s: smartctl predates --json; using its text output", tr.host)
                r = self._smartctl(tr, base, self.section.timeout)
        except TimeoutError:
            return f"smartctl did not finish within {self.section.timeout:g}s"
        except OSError as exc:
            return f"cannot run smartctl: {exc}"
        if _STANDBY.search(r.stdout):
            log.debug("smart %s %s: in a low-power mode, not woken (nocheck=%s)", tr.host, disk.name,
                      self.section.nocheck)  # fmt: skip
            return None
        try:
            return parse(r.stdout), r.returncode
        except SmartParseError as exc:
            detail = (r.stderr.strip().splitlines() or [""])[-1][:200]
            msg = str(exc) if "exit status" in str(exc) else f"exit status {r.returncode}: {exc}"
            return msg + (f" ({detail})" if detail else "")


def report_points(report: SmartReport, host: str, device: str, exit_status: int | None, time: int = 0) -> list[Point]:
    """Telegraf's `smart_device` point and one `smart_attribute` point per ATA attribute of one disk."""
    ts = time or now_ns()
    tags = {"host": host, "device": device, "model": report.model, "serial_no": report.serial_no, "wwn": report.wwn}
    status = report.exit_status if exit_status is None else exit_status
    fields: dict[str, int | bool] = {k: v for k in METRIC_FIELDS if (v := getattr(report, k)) is not None}
    if status is not None:
        fields["exit_status"] = status
    points = [Point(SMART_DEVICE, tags, fields, ts)] if fields else []
    for a in report.attributes:
        afields = {"raw_value": a.raw_value, "value": a.value, "worst": a.worst, "threshold": a.threshold}
        if status is not None:
            afields["exit_status"] = status
        if all(v is None for v in afields.values()):
            continue
        atags = {**tags, "id": str(a.id), "name": a.name, "flags": a.flags, "fail": "true" if a.fail else "false"}
        points.append(Point(SMART_ATTRIBUTE, atags, afields, ts))
    return points


@register("smart")
def _factory(cfg: Config) -> Collector | None:
    section = cfg.collect.smart
    if not section.enabled:
        return None
    # A host's poll queries its disks `concurrency` at a time; let it run up to the interval.
    targets = [replace(t, timeout=max(t.timeout, t.interval)) for t in host_targets(cfg, "smart", section)]
    return SmartCollector(section, targets)
