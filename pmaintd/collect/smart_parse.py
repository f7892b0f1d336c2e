"""smartctl output -> one `SmartReport` per disk: the text formats through pySMART, `--json` directly.

Why two paths: pySMART is the parser the design asks for and understands every text layout smartctl has
printed since 5.0 (ATA attribute tables, SCSI/SAS logs, the NVMe health log), but it keeps no WWN, no SAS
error-counter totals from JSON, and cannot read `--json` at all. smartctl's JSON (7.0+) is exact and
versioned. So: text goes through pySMART (replayed through a `Smartctl` whose `generic_call` returns the
recorded lines, exactly as pySMART's own tests replay files) plus a few regexes for what pySMART drops;
JSON is read field by field; and JSON made with `--json=o` carries the text too, so both run and JSON fills
whatever pySMART left empty.

Every number is the device's RAW value (never the normalized 1-253 VALUE) so that thresholds learned on
Backblaze's `smart_N_raw` columns apply. An attribute's raw value is the leading integer smartctl prints
(`37 (Min/Max 20/45)` is 37; `12345h+10m` is 12345), the same rule in both paths and the one Telegraf uses.

Anything that is not one disk's report (a `--scan-open` listing, "self-test started", a `-d test` probe,
garbage, a truncated file) raises `SmartParseError` naming what it looked like, never another exception.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# pySMART sets LANG=C for the whole process when imported (so that the smartctl it spawns prints English).
# pmaintd never lets pySMART spawn anything, and other children (action commands) must keep the operator's
# locale, so the variable is put back as it was.
_lang = os.environ.get("LANG")
from pySMART import Device  # noqa: E402
from pySMART.interface import AtaAttributes, NvmeAttributes, SCSIAttributes  # noqa: E402
from pySMART.smartctl import Smartctl  # noqa: E402

from pmaintd.telemetry import device_text  # noqa: E402

if _lang is None:
    os.environ.pop("LANG", None)
else:
    os.environ["LANG"] = _lang


class SmartParseError(ValueError):
    """The input is not a usable smartctl report of one disk; the message says what it is instead."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind
        """What the input looked like: invalid, truncated, binary, empty, scan, action, capabilities, type-probe, log,
        error."""


@dataclass(frozen=True)
class SmartAttribute:
    """One row of an ATA SMART attribute table."""

    id: int
    name: str
    value: int | None
    worst: int | None
    threshold: int | None
    raw_value: int | None
    raw_string: str
    flags: str
    """smartctl's brief flag letters (POSRCK, '-' for unset), as Telegraf's `flags` tag."""
    fail: bool
    """WHEN_FAILED is set (`FAILING_NOW`, `In_the_past`, or JSON's `now`/`past`)."""


@dataclass
class SmartReport:
    """One disk as parsed. None means the device did not report it; numbers are raw device values."""

    serial_no: str | None = None
    model: str | None = None
    wwn: str | None = None
    firmware: str | None = None
    device_type: str | None = None
    """ata, nvme or scsi (SATA behind a SAS HBA or MegaRAID is ata: it has ATA attributes)."""
    capacity_bytes: int | None = None
    smart_enabled: bool | None = None
    health_ok: bool | None = None
    exit_status: int | None = None
    temp_c: int | None = None
    power_on_hours: int | None = None
    power_cycle_count: int | None = None
    read_error_rate: int | None = None
    seek_error_rate: int | None = None
    spin_retry_count: int | None = None
    reallocated_sectors_count: int | None = None
    realloc_event_count: int | None = None
    pending_sector_count: int | None = None
    uncorrectable_sector_count: int | None = None
    uncorrectable_errors: int | None = None
    end_to_end_error: int | None = None
    command_timeout: int | None = None
    udma_crc_errors: int | None = None
    soft_read_error_rate: int | None = None
    media_errors: int | None = None
    percentage_used: int | None = None
    available_spare: int | None = None
    available_spare_threshold: int | None = None
    critical_warning: int | None = None
    unsafe_shutdowns: int | None = None
    num_err_log_entries: int | None = None
    data_units_read: int | None = None
    data_units_written: int | None = None
    host_read_commands: int | None = None
    host_write_commands: int | None = None
    controller_busy_time: int | None = None
    warning_temp_time: int | None = None
    critical_temp_time: int | None = None
    grown_defects: int | None = None
    uncorrected_read_errors: int | None = None
    uncorrected_write_errors: int | None = None
    uncorrected_verify_errors: int | None = None
    non_medium_errors: int | None = None
    source: str = "text"
    """text (pySMART), json, or json+text (`--json=o`: both)."""
    attributes: list[SmartAttribute] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The shape `pmaintd smart parse --json` prints (attributes without the redundant raw_string)."""
        out = asdict(self)
        out["attributes"] = [
            {k: a[k] for k in ("id", "name", "value", "worst", "threshold", "raw_value", "flags", "fail")}
            for a in out["attributes"]
        ]
        return out


METRIC_FIELDS = tuple(
    k
    for k in SmartReport.__dataclass_fields__
    if k not in ("serial_no", "model", "wwn", "firmware", "device_type", "capacity_bytes", "source", "attributes")
)
"""The report's values that become `smart_device` fields (Telegraf's names)."""

ATTRIBUTE_FIELDS = {
    1: "read_error_rate",
    5: "reallocated_sectors_count",
    7: "seek_error_rate",
    10: "spin_retry_count",
    12: "power_cycle_count",
    184: "end_to_end_error",
    187: "uncorrectable_errors",
    188: "command_timeout",
    196: "realloc_event_count",
    197: "pending_sector_count",
    198: "uncorrectable_sector_count",
    199: "udma_crc_errors",
    201: "soft_read_error_rate",
}
"""ATA attribute id -> smart_device field (Telegraf inputs.smart's names), taken from the RAW value."""

_NVME_JSON = {
    "critical_warning": "critical_warning",
    "available_spare": "available_spare",
    "available_spare_threshold": "available_spare_threshold",
    "percentage_used": "percentage_used",
    "data_units_read": "data_units_read",
    "data_units_written": "data_units_written",
    "host_reads": "host_read_commands",
    "host_writes": "host_write_commands",
    "controller_busy_time": "controller_busy_time",
    "power_cycles": "power_cycle_count",
    "power_on_hours": "power_on_hours",
    "unsafe_shutdowns": "unsafe_shutdowns",
    "media_errors": "media_errors",
    "num_err_log_entries": "num_err_log_entries",
    "warning_temp_time": "warning_temp_time",
    "critical_comp_time": "critical_temp_time",
}

_NVME_PYSMART = {
    "criticalWarning": "critical_warning",
    "availableSpare": "available_spare",
    "availableSpareThreshold": "available_spare_threshold",
    "percentageUsed": "percentage_used",
    "dataUnitsRead": "data_units_read",
    "dataUnitsWritten": "data_units_written",
    "hostReadCommands": "host_read_commands",
    "hostWriteCommands": "host_write_commands",
    "controllerBusyTime": "controller_busy_time",
    "powerCycles": "power_cycle_count",
    "powerOnHours": "power_on_hours",
    "unsafeShutdowns": "unsafe_shutdowns",
    "integrityErrors": "media_errors",
    "errorEntries": "num_err_log_entries",
    "warningTemperatureTime": "warning_temp_time",
    "criticalTemperatureTime": "critical_temp_time",
}

MAX_INPUT = 4 * 1024 * 1024
"""A smartctl -x report is tens of KB; anything far larger is not one."""


# ---------------------------------------------------------------------------------------------------------
# entry points


def parse(data: str | bytes) -> SmartReport:
    """Parse one saved or live smartctl output (text -a/-x/-i, or --json), whichever it is."""
    text = _decode(data)
    stripped = text.lstrip()
    if stripped.startswith("{") or re.match(r"\[\s*[{\]]", stripped):
        return parse_json(stripped)
    return parse_text(text)


def parse_json(text: str) -> SmartReport:
    """Parse `smartctl --json` output; with `--json=o` the embedded text goes through pySMART as well."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SmartParseError(
            f"truncated or invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", "truncated"
        ) from None
    if not isinstance(doc, dict):
        raise SmartParseError("JSON is not a smartctl report (expected an object)")
    if "devices" in doc and "device" not in doc:
        raise SmartParseError("a device listing (smartctl --scan --json), not one disk's report", "scan")
    ctl = doc.get("smartctl") if isinstance(doc.get("smartctl"), dict) else {}
    report = _from_json(doc)
    embedded = ctl.get("output")
    if isinstance(embedded, list) and embedded and all(isinstance(x, str) for x in embedded):
        try:
            base = parse_text("\n".join(embedded))
        except SmartParseError:
            base = None
        if base is not None:
            report = _merge(base, report)
            report.source = "json+text"
    if not _has_device_data(report):
        raise SmartParseError(_json_failure(doc, ctl), "error")
    return report


def parse_text(text: str) -> SmartReport:
    """Parse smartctl's text output (any version since 5.0) through pySMART, plus what pySMART drops."""
    kind = classify_text(text)
    if kind == "error" and (m := _ERROR_LINE.search(text)):
        raise SmartParseError(f"{_NOT_DEVICE[kind]}: {m.group(0).strip()}", kind)
    if kind != "device":
        raise SmartParseError(_NOT_DEVICE[kind], kind)
    lines = text.splitlines()
    body = _drop_banner(lines)
    interface = _guess_interface(body)
    try:
        # pySMART needs a device name; with a replayed output it only builds the (unused) device path from it.
        dev = Device("replay", interface=interface, smartctl=_Replay(body))
        report = _from_pysmart(dev, interface)
    except Exception as exc:
        # pySMART (and humanfriendly under it, whose InvalidSize is no ValueError) raises whatever its regexes
        # and int() calls hit on damaged input; any of it means "not parseable", which callers handle.
        raise SmartParseError(f"pySMART could not parse this output ({type(exc).__name__}: {exc})") from None
    _text_extras(body, report)
    if not _has_device_data(report):
        raise SmartParseError("no disk identity, health or attributes found (truncated output?)", "truncated")
    return report


def parse_scan(text: str) -> list[tuple[str, str | None]]:
    """Parse `smartctl --scan-open` (or --scan): [(device, -d type or None)], skipping devices that failed
    to open. The comment after `#` is ignored: it is device-provided text."""
    out = []
    for line in text.splitlines():
        m = _SCAN_RE.match(line)
        if not m or "open failed" in line.partition("#")[2]:
            continue
        out.append((m.group(1), m.group(2)))
    return out


# ---------------------------------------------------------------------------------------------------------
# classification

_SCAN_RE = re.compile(r"^(\S+)(?:\s+-d\s+(\S+))?\s+#\s")
_NOT_DEVICE = {
    "empty": "empty input",
    "binary": "binary data, not smartctl output",
    "scan": "a device listing (smartctl --scan/--scan-open), not one disk's report",
    "type-probe": "a device-type probe (smartctl -d test), not one disk's report",
    "action": "the output of a self-test command (smartctl -t/-X), not a disk's report",
    "capabilities": "a capabilities listing (smartctl -c) without the disk's identity",
    "log": "a single log page (e.g. smartctl -l background) without the disk's identity",
    "error": "smartctl reported an error and no disk data",
    "invalid": "not smartctl output (no identity, health or attribute section found)",
}
_ERROR_LINE = re.compile(
    r"^.*(Smartctl open device: .* failed|Unable to detect device type|Permission denied|failed: |"
    r"Please specify device type|A mandatory SMART command failed).*$",
    re.M,
)
_DEVICE_MARKERS = re.compile(
    r"^(Device Model|Model Number|Serial [Nn]umber|Product|Vendor|Model Family)\s*:|"
    r"SMART overall-health self-assessment|SMART Health Status|Specific SMART Attributes|"
    r"SMART/Health Information \(NVMe",
    re.M,
)


def classify_text(text: str) -> str:
    """What a text output is: device, scan, type-probe, capabilities, log, action, error, empty, binary or
    invalid."""
    if not text.strip():
        return "empty"
    if "\x00" in text or sum(not (c.isprintable() or c in "\t\r\n") for c in text[:4096]) > 40:
        return "binary"
    if _DEVICE_MARKERS.search(text):
        return "device"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and all(_SCAN_RE.match(ln) or ln.startswith("#") for ln in lines):
        return "scan"
    if re.search(r"Device of type '[^']*' \[[^\]]*\] (detected|opened)", text):
        return "type-probe"
    if "General SMART Values" in text:
        return "capabilities"
    if re.search(r"Self-test log structure|Background scan results log|Error counter log", text):
        return "log"
    if re.search(r"Testing has begun|Self-testing aborted|Self-test routine|test started|"
                 r"Sending command:|=== START OF OFFLINE IMMEDIATE AND SELF-TEST SECTION ===", text):  # fmt: skip
        return "action"
    if _ERROR_LINE.search(text):
        return "error"
    return "invalid"


# ---------------------------------------------------------------------------------------------------------
# text path: pySMART


class _Replay(Smartctl):
    """A Smartctl that answers pySMART's `--all`/`--info` calls with recorded lines and nothing else (a
    recording holds one command's output; pySMART's optional follow-up queries get an empty answer)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(smartctl_path="smartctl")
        kept = [_hex_flags(ln) for ln in _drop_self_test_rows(lines) if not _pysmart_trap(ln)]
        self._lines = _add_updated_column(kept)

    def generic_call(self, params: list[str], pass_options: bool = False) -> tuple[list[str], int]:
        if "--all" in params or "--info" in params:
            # pySMART skips the first four lines (smartctl's banner); _drop_banner removed it, so pad.
            return ["", "", "", "", *self._lines], 0
        return [], 1


_PYSMART_KEYS = ("Device Model", "Product", "Model Number", "Model Family", "Serial Number", "Serial number",
                 "Firmware Version", "Revision", "SMART overall-health", "SMART Health Status",
                 "Accumulated power on time", "non-medium error count", "Elements in grown defect list")  # fmt: skip


def _pysmart_trap(line: str) -> bool:
    """pySMART matches these keys anywhere in a line and then takes `split(':')[1]`; free-text notes that
    contain a key but no colon (old smartctl: "SMART is only available in ATA Version 3 Revision 3") would
    crash it, so they are not shown to it. They carry no value anyway."""
    return ":" not in line and any(k in line for k in _PYSMART_KEYS)


_BRIEF_ROW = re.compile(r"^(\s*\d+\s+\S+\s+)([-A-Z]{6}\+?)(\s+\d+\s+\d+\s+\S+\s)")


def _hex_flags(line: str) -> str:
    """`smartctl -f brief` prints attribute flags as letters (POSR--); pySMART only reads 0x hex."""
    m = _BRIEF_ROW.match(line)
    if not m:
        return line
    letters = m.group(2)
    value = sum(1 << i for i, ch in enumerate(letters[:6]) if ch != "-") | (0x40 if letters.endswith("+") else 0)
    return f"{m.group(1)}0x{value:04x}{m.group(3)}{line[m.end() :]}"


_OLD_ROW = re.compile(r"^(\s*\d+\s+\S+\s+0x[0-9a-fA-F]+\s+\d+\s+\d+\s+\S+\s+\S+)(\s+\S+\s+.*)$")


def _drop_self_test_rows(lines: list[str]) -> list[str]:
    """pySMART matches each self-test log row with backtracking regexes (30+ ms for a full 21-entry log, most
    of a parse); pmaintd uses no self-test entries, so the rows are not shown to it. The log's header stays."""
    out, in_log = [], False
    for line in lines:
        if "Self-test log" in line:
            in_log = True
        elif not line.strip():
            in_log = False
        elif in_log and line.lstrip().startswith("#"):
            continue
        out.append(line)
    return out


def _add_updated_column(lines: list[str]) -> list[str]:
    """smartctl before 5.30 printed the attribute table without the UPDATED column, which pySMART's row
    pattern requires (it silently drops such rows); insert a "-" column so those tables are read."""
    out, old = [], False
    for line in lines:
        if line.startswith("ID#"):
            old = "UPDATED" not in line
        elif not line.strip():
            old = False
        elif old and (m := _OLD_ROW.match(line)):
            line = f"{m.group(1)}  -{m.group(2)}"
        out.append(line)
    return out


_BANNER = re.compile(r"^\s*$|^smartctl\b|^Copyright|^Home page|^\[?\S*[#$%]\s|^#|^\S*/smartctl\s")


def _drop_banner(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if not _BANNER.match(line):
            return lines[i:]
    return []


def _guess_interface(lines: list[str]) -> str:
    text = "\n".join(lines)
    if "Specific SMART Attributes" in text or re.search(r"^(Device Model|ATA Version)", text, re.M):
        return "ata"
    if re.search(r"NVMe Log|^NVMe Version|^Model Number:|^PCI Vendor", text, re.M):
        return "nvme"
    if re.search(r"^(Vendor|Product|Transport protocol|Device)\s*:|SMART Health Status|^SMART Sense:", text, re.M):
        return "scsi"
    return "ata"


def _from_pysmart(dev: Device, interface: str) -> SmartReport:
    r = SmartReport(source="text")
    r.model = device_text(dev.model)
    r.serial_no = device_text(dev.serial)  # _text_extras replaces it with the whole line's value
    r.firmware = device_text(dev.firmware)
    r.capacity_bytes = dev._capacity  # pySMART keeps the exact byte count private
    r.smart_enabled = dev.smart_enabled if (dev.smart_enabled or dev.smart_capable) else None
    # pySMART turns PASSED into WARN when an attribute failed in the past; health_ok is the drive's own verdict.
    r.health_ok = {"PASS": True, "FAIL": False}.get(dev.assessment or "")
    ifa = dev.if_attributes
    r.device_type = interface
    if isinstance(ifa, AtaAttributes):
        # pySMART prefers attribute 190 and does not decode packed raw values; _attribute_fields does both.
        r.device_type = "ata"
        for a in ifa.legacyAttributes:
            if a is None:
                continue
            r.attributes.append(_pysmart_attribute(a))
    elif isinstance(ifa, NvmeAttributes):
        r.device_type = "nvme"
        r.temp_c = dev.temperature
        for src, dst in _NVME_PYSMART.items():
            setattr(r, dst, getattr(ifa, src, None))
    elif isinstance(ifa, SCSIAttributes) and interface == "scsi":
        # pySMART files any output without an ATA table under SCSI; only a real SCSI report has these.
        r.temp_c = dev.temperature
        d = ifa.diagnostics
        r.grown_defects = d.Reallocated_Sector_Ct
        r.power_on_hours = d.Power_On_Hours
        r.uncorrected_read_errors = d.Uncorrected_Reads
        r.uncorrected_write_errors = d.Uncorrected_Writes
        r.uncorrected_verify_errors = d.Uncorrected_Verifies
        r.non_medium_errors = d.Non_Medium_Errors
    _attribute_fields(r)
    return r


def _pysmart_attribute(a: Any) -> SmartAttribute:
    raw = str(a.raw).strip()
    when = str(a.when_failed).strip()
    return SmartAttribute(
        id=int(a.num),
        name=str(a.name),
        value=_int_or_none(a.value_str),
        worst=_int_or_none(a._worst),  # the public properties raise on "---"
        threshold=_int_or_none(a._thresh),
        raw_value=raw_int(raw),
        raw_string=raw,
        flags=brief_flags(int(a.flags)),
        fail=when not in ("-", ""),
    )


_WWN_ATA = re.compile(r"^LU WWN Device Id:\s*([0-9a-fA-F])\s+([0-9a-fA-F]+)\s+([0-9a-fA-F]+)\s*$", re.M)
_WWN_SCSI = re.compile(r"^Logical Unit id:\s*0x([0-9a-fA-F]+)\s*$", re.M)
_NVME_EUI = re.compile(r"^Namespace 1 IEEE EUI-64:\s*([0-9a-fA-F]{6})\s+([0-9a-fA-F]+)\s*$", re.M)
_OLD_SCSI_DEVICE = re.compile(r"^Device:\s*(.*?)\s+Version:", re.M)
_SERIAL = re.compile(r"^Serial [Nn]umber:[ \t]*(.*)$", re.M)
_NON_MEDIUM = re.compile(r"^Non-medium error count:\s*(\d+)", re.M)
_SCSI_POH = re.compile(r"^\s*Accumulated power on time, hours:minutes\s+(\d+):\d+", re.M)
_HEALTH_ATA = re.compile(r"^SMART overall-health self-assessment test result:\s*(\S+)", re.M)
_HEALTH_SCSI = re.compile(r"^SMART Health Status:\s*(\S.*)$", re.M)
_HEALTH_OLD = re.compile(r"^SMART Sense:\s*(\S.*)$", re.M)


def _text_extras(lines: list[str], r: SmartReport) -> None:
    """What pySMART parses but does not keep (WWN), or misses in some layouts."""
    text = "\n".join(lines)
    if m := _WWN_ATA.search(text):
        r.wwn = "".join(m.groups()).lower()
    elif m := _WWN_SCSI.search(text):
        r.wwn = m.group(1).lower()
    elif m := _NVME_EUI.search(text):
        r.wwn = "eui." + "".join(m.groups()).lower()
    if r.model is None and (m := _OLD_SCSI_DEVICE.search(text)):
        r.model = device_text(m.group(1))
    if m := _SERIAL.search(text):
        serial = m.group(1).strip()
        r.serial_no = None if serial.startswith("[No ") or not serial else device_text(serial)
    if r.device_type == "scsi" and r.non_medium_errors is None and (m := _NON_MEDIUM.search(text)):
        r.non_medium_errors = int(m.group(1))  # pySMART looks for a lower-case spelling smartctl never printed
    if r.power_on_hours is None and (m := _SCSI_POH.search(text)):
        r.power_on_hours = int(m.group(1))
    if m := _HEALTH_ATA.search(text):
        r.health_ok = m.group(1) == "PASSED"
    elif m := _HEALTH_SCSI.search(text):
        r.health_ok = m.group(1).strip() == "OK"
    elif r.health_ok is None and (m := _HEALTH_OLD.search(text)):
        r.health_ok = m.group(1).strip().lower().startswith("ok")


# ---------------------------------------------------------------------------------------------------------
# JSON path


def _from_json(doc: dict[str, Any]) -> SmartReport:
    r = SmartReport(source="json")
    dev = _dict(doc.get("device"))
    proto = str(dev.get("protocol") or "").lower()
    model = doc.get("model_name") or doc.get("scsi_model_name") or _join(doc, "scsi_vendor", "scsi_product")
    r.model = device_text(model)
    r.serial_no = device_text(doc.get("serial_number"))
    r.firmware = device_text(doc.get("firmware_version") or doc.get("scsi_revision") or doc.get("revision"))
    w = _dict(doc.get("wwn"))
    if all(isinstance(w.get(k), int) for k in ("naa", "oui", "id")):
        r.wwn = f"{w['naa']:01x}{w['oui']:06x}{w['id']:09x}"
    elif isinstance(doc.get("logical_unit_id"), str):
        r.wwn = doc["logical_unit_id"].lower().removeprefix("0x")
    elif isinstance(doc.get("nvme_namespaces"), list) and doc["nvme_namespaces"]:
        eui = _dict(_dict(doc["nvme_namespaces"][0]).get("eui64"))
        if isinstance(eui.get("oui"), int) and isinstance(eui.get("ext_id"), int):
            r.wwn = f"eui.{eui['oui']:06x}{eui['ext_id']:010x}"
    r.capacity_bytes = _int(_dict(doc.get("user_capacity")).get("bytes")) or _int(doc.get("nvme_total_capacity"))
    support = _dict(doc.get("smart_support"))
    r.smart_enabled = support.get("enabled") if isinstance(support.get("enabled"), bool) else None
    status = _dict(doc.get("smart_status"))
    r.health_ok = status.get("passed") if isinstance(status.get("passed"), bool) else None
    r.exit_status = _int(_dict(doc.get("smartctl")).get("exit_status"))
    r.temp_c = _int(_dict(doc.get("temperature")).get("current"))
    r.power_on_hours = _int(_dict(doc.get("power_on_time")).get("hours"))
    r.power_cycle_count = _int(doc.get("power_cycle_count"))
    table = _dict(doc.get("ata_smart_attributes")).get("table")
    if isinstance(table, list):
        r.device_type = "ata"
        for row in table:
            if isinstance(row, dict) and isinstance(row.get("id"), int):
                r.attributes.append(_json_attribute(row))
        _attribute_fields(r)
    nvme = _dict(doc.get("nvme_smart_health_information_log"))
    if nvme or proto == "nvme":
        r.device_type = "nvme"
        for src, dst in _NVME_JSON.items():
            if (v := _int(nvme.get(src))) is not None:
                setattr(r, dst, v)
        if r.temp_c is None:
            r.temp_c = _int(nvme.get("temperature"))
    if proto == "scsi" or "scsi_grown_defect_list" in doc or "scsi_error_counter_log" in doc:
        r.device_type = r.device_type or "scsi"
        r.grown_defects = _int(doc.get("scsi_grown_defect_list"))
        log = _dict(doc.get("scsi_error_counter_log"))
        r.uncorrected_read_errors = _int(_dict(log.get("read")).get("total_uncorrected_errors"))
        r.uncorrected_write_errors = _int(_dict(log.get("write")).get("total_uncorrected_errors"))
        r.uncorrected_verify_errors = _int(_dict(log.get("verify")).get("total_uncorrected_errors"))
        r.non_medium_errors = _int(_dict(doc.get("scsi_nonmedium_error_count")).get("count")) or _int(
            doc.get("scsi_nonmedium_error_count")
        )
    if r.device_type is None and proto in ("ata", "nvme", "scsi"):
        r.device_type = proto
    return r


def _json_attribute(row: dict[str, Any]) -> SmartAttribute:
    raw = _dict(row.get("raw"))
    raw_string = str(raw.get("string", "")).strip()
    flags = _dict(row.get("flags"))
    when = str(row.get("when_failed") or "").strip()
    lead = raw_int(raw_string)
    return SmartAttribute(
        id=int(row["id"]),
        name=str(row.get("name", "")),
        value=_int(row.get("value")),
        worst=_int(row.get("worst")),
        threshold=_int(row.get("thresh")),
        raw_value=lead if lead is not None else _int(raw.get("value")),
        raw_string=raw_string,
        flags=brief_flags(_int(flags.get("value")) or 0),
        fail=when not in ("", "-"),
    )


def _json_failure(doc: dict[str, Any], ctl: dict[str, Any]) -> str:
    msgs = [str(m.get("string")) for m in ctl.get("messages") or [] if isinstance(m, dict) and m.get("string")]
    code = ctl.get("exit_status")
    why = "; ".join(msgs) or "no disk identity, health or attributes"
    return f"smartctl reported no disk data (exit status {code}): {why}"


# ---------------------------------------------------------------------------------------------------------
# shared helpers


def _attribute_fields(r: SmartReport) -> None:
    by_id = {a.id: a for a in r.attributes}
    for aid, name in ATTRIBUTE_FIELDS.items():
        a = by_id.get(aid)
        if a is not None and a.raw_value is not None and getattr(r, name) is None:
            setattr(r, name, a.raw_value)
    if r.power_on_hours is None and (a := by_id.get(9)) is not None:
        r.power_on_hours = power_on_hours(a.name, a.raw_string, a.raw_value)
    if r.temp_c is None:
        for aid in (194, 190):
            if (a := by_id.get(aid)) is not None and (t := attribute_temperature(a.raw_value)) is not None:
                r.temp_c = t
                break


def attribute_temperature(raw: int | None) -> int | None:
    """Celsius from attribute 194/190's raw value. Old smartctl printed the whole 48-bit word (min/max packed
    above the current value); the current temperature is its low byte, which is what smartctl decodes."""
    if raw is None:
        return None
    t = raw & 0xFF if raw > 0xFF else raw
    return t if 0 < t < 150 else None


def power_on_hours(name: str, raw_string: str, raw_value: int | None) -> int | None:
    """Attribute 9 in hours, whatever unit the vendor counts in (smartctl names the unit in the name, or
    prints `12345h+10m+05s`)."""
    if m := re.match(r"^\s*(\d+)h\+", raw_string):
        return int(m.group(1))
    if raw_value is None:
        return None
    low = name.lower()
    if "half_minutes" in low:
        return raw_value // 120
    if "minutes" in low:
        return raw_value // 60
    if "seconds" in low:
        return raw_value // 3600
    return raw_value


def raw_int(raw: str) -> int | None:
    """The leading integer of a raw attribute string (`0x...` read as hex); None when there is none."""
    s = raw.strip()
    if m := re.match(r"^0x([0-9a-fA-F]+)\b", s):
        return int(m.group(1), 16)
    if m := re.match(r"^(\d+)", s):
        return int(m.group(1))
    return None


def brief_flags(value: int) -> str:
    """ATA attribute flag bits as smartctl's brief letters: P O S R C K, '-' when unset, '+' for others."""
    letters = "".join(ch if value & (1 << i) else "-" for i, ch in enumerate("POSRCK"))
    return letters + ("+" if value & ~0x3F else "")


def _merge(base: SmartReport, extra: SmartReport) -> SmartReport:
    """base (pySMART) wins; extra (JSON) fills what base lacks."""
    for k in SmartReport.__dataclass_fields__:
        if k in ("source", "attributes"):
            continue
        if getattr(base, k) is None:
            setattr(base, k, getattr(extra, k))
    if not base.attributes:
        base.attributes = extra.attributes
    return base


def _has_device_data(r: SmartReport) -> bool:
    has_identity = bool(r.serial_no or r.model or r.wwn)
    has_data = r.health_ok is not None or bool(r.attributes) or r.temp_c is not None
    return has_identity or has_data


def _decode(data: str | bytes) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_INPUT:
            raise SmartParseError(f"input is {len(data)} bytes; a smartctl report is far smaller")
        if b"\x00" in data[:4096]:
            raise SmartParseError(_NOT_DEVICE["binary"], "binary")
        # Windows builds print thousands separators in the console code page; dropping undecodable bytes
        # turns "21\xff600\xff976" into 21600976, as pySMART's own decoder (ASCII, ignore) does.
        return data.decode("utf-8", errors="ignore")
    if len(data) > MAX_INPUT:
        raise SmartParseError(f"input is {len(data)} characters; a smartctl report is far smaller")
    return data


def _join(doc: dict[str, Any], *keys: str) -> str | None:
    parts = [str(doc[k]).strip() for k in keys if isinstance(doc.get(k), str) and doc[k].strip()]
    return " ".join(parts) or None


def _dict(v: object) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    return None


def _int_or_none(v: object) -> int | None:
    try:
        return int(str(v).strip())
    except ValueError:
        return None
