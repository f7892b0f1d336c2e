"""The Point every collector emits and every store accepts, and the names shared with Telegraf.

Points use Telegraf's measurement, tag and field names so that an InfluxDB Telegraf already fills can be
read by pmaintd, and what pmaintd writes can be read by anything that reads Telegraf's data.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

FieldValue = int | float | bool | str

# Telegraf measurements pmaintd writes and reads.
SMART_DEVICE = "smart_device"
SMART_ATTRIBUTE = "smart_attribute"
DISKIO = "diskio"
CPU = "cpu"
MEM = "mem"
SYSTEM = "system"
INTERFACE = "interface"
# pmaintd's own outputs are separate measurements so they never mix with raw telemetry.
FORECAST = "pmaintd_forecast"
ACTION = "pmaintd_action"
INCIDENT = "pmaintd_incident"
ANOMALY = "pmaintd_anomaly"
SELF = "pmaintd_collector"


def now_ns() -> int:
    """Wall-clock time in integer nanoseconds since the epoch, the unit every Point carries."""
    return _time.time_ns()


@dataclass(frozen=True, slots=True)
class Point:
    """One sample: a measurement, identifying tags, values, and a time in ns since the epoch (UTC).

    Tags and fields are plain dicts; values that cannot be stored (NaN, inf, None) are dropped at
    construction so that no store ever has to decide what they mean.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time: int = field(default_factory=now_ns)

    def __post_init__(self) -> None:
        if not self.measurement:
            raise ValueError("a Point needs a measurement name")
        clean = {k: v for k, v in ((k, _native(v)) for k, v in self.fields.items()) if _storable(v)}
        if not clean:
            raise ValueError(f"a {self.measurement} Point needs at least one storable field")
        object.__setattr__(self, "fields", clean)
        object.__setattr__(self, "tags", {k: str(v) for k, v in self.tags.items() if v is not None and v != ""})

    def to_json(self) -> dict[str, object]:
        """The JSON shape `pmaintd collect --json` prints: time as RFC 3339 UTC with microseconds."""
        return {
            "measurement": self.measurement,
            "tags": dict(self.tags),
            "fields": dict(self.fields),
            "time": format_time(self.time),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Point:
        """Inverse of `to_json`; accepts an RFC 3339 string or integer nanoseconds for `time`."""
        t = obj.get("time")
        ts = parse_time(t) if isinstance(t, str) else int(t) if isinstance(t, int) else now_ns()
        return cls(str(obj["measurement"]), dict(obj.get("tags") or {}), dict(obj["fields"]), ts)  # type: ignore[arg-type]


def _native(v: object) -> object:
    """numpy/polars scalars -> the Python int/float/bool they hold, so every store sees plain types."""
    if type(v) in (int, float, bool, str) or v is None:
        return v
    item = getattr(v, "item", None)
    return item() if callable(item) else v


def _storable(v: object) -> bool:
    if v is None:
        return False
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, int | str | bool)


def format_time(ns: int) -> str:
    """RFC 3339 UTC with microsecond precision, e.g. 2026-11-29T12:00:00.123456Z."""
    secs, rem = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1000:06d}Z"


def parse_time(text: str) -> int:
    """Parse an ISO 8601 / RFC 3339 time (naive means UTC) into integer nanoseconds."""
    s = text.strip().replace("Z", "+00:00")
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def device_text(value: object) -> str | None:
    """A string a device reports about itself (serial, model, firmware) as a tag value: control characters
    dropped and whitespace runs (firmware pads fixed-width fields) folded to one space; None when nothing is
    left. diskio and smart both use it, so a disk's serial_no is the same string whether it came from
    udev/sysfs or from smartctl, and the two join on it."""
    if not isinstance(value, str):
        return None
    return " ".join("".join(ch for ch in value if ch.isprintable() or ch.isspace()).split()) or None


def disk_entity(serial: str | None, wwn: str | None) -> str | None:
    """A disk's identity: its serial number, else its WWN; never the device name, which moves."""
    return serial or wwn or None


def interface_entity(device: str, if_name: str) -> str:
    """A network interface's identity: `device/ifName`."""
    return f"{device}/{if_name}"


def measurements_of(points: Iterable[Point]) -> set[str]:
    """The distinct measurement names in a batch (for logging and self-metrics)."""
    return {p.measurement for p in points}
