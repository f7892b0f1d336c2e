"""Incidents in the store: recording them, reading them back, and detecting them from telemetry.

Operators record incidents (`pmaintd incidents add/import`); pmaintd also detects the ones telemetry shows
unambiguously, so that labels accumulate without anyone typing them:

- a disk that fails its SMART health check (`smart_device.health_ok` turns false);
- a disk that vanishes: its serial stops reporting while its host keeps reporting other disks;
- a host unreachable for longer than a threshold: its `system`/`cpu` telemetry stops, or has a gap;
- an interface down while admin-up for longer than a threshold (`ifOperStatus` = 2 with `ifAdminStatus` = 1).

An operator can also mark a forecast or an action a false alarm: that is stored as a `pmaintd_incident` with
`type` = "false_alarm", a label that says the entity did NOT fail, and is never counted as a failure.
Recording is idempotent: an incident of the same kind and entity near a stored one is not written again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from pmaintd.forecast.labels import Incident
from pmaintd.store import Store
from pmaintd.telemetry import INCIDENT, Point

FAILURE = "failure"
FALSE_ALARM = "false_alarm"


@dataclass(frozen=True)
class DetectionRules:
    """Thresholds for automatic incidents, in seconds (config `[incidents]`)."""

    host_unreachable_after: float = 600.0
    interface_down_after: float = 300.0
    disk_vanished_after: float = 3 * 3600.0


def to_point(inc: Incident, source: str, type_: str = FAILURE) -> Point:
    """A `pmaintd_incident` point; tags say where it came from (operator, file, auto) and its type."""
    fields: dict[str, str | int] = {"count": 1}
    if inc.cause:
        fields["cause"] = inc.cause
    return Point(INCIDENT, {"kind": inc.kind, "entity": inc.entity, "source": source, "type": type_}, fields, inc.time)


def read(
    store: Store, kind: str | None = None, start: int | None = None, stop: int | None = None, type_: str = FAILURE
) -> list[Incident]:
    """Incidents of one type (failures by default) in [start, stop), oldest first."""
    tags: dict[str, str] = {"kind": kind} if kind else {}
    df = store.query(INCIDENT, start, stop, tags=tags)
    if df.is_empty():
        return []
    if "type" in df.columns:
        df = df.filter(pl.col("type").fill_null(FAILURE) == type_)
    elif type_ != FAILURE:
        return []
    cause = df["cause"] if "cause" in df.columns else pl.Series([None] * len(df))
    out = [
        Incident(int(t.timestamp() * 1_000_000) * 1000, k, e, c or "")
        for t, k, e, c in zip(df["time"], df["kind"], df["entity"], cause, strict=True)
    ]
    return sorted(out, key=lambda i: (i.time, i.kind, i.entity))


def record(
    store: Store, incidents: Iterable[Incident], source: str, type_: str = FAILURE, same_within: float = 86400.0
) -> list[Incident]:
    """Write the incidents not already in the store; returns those written.

    An incident of the same kind and entity within `same_within` seconds of a stored one is the same
    event seen twice (an operator's record and pmaintd's detection of it, or two overlapping passes)."""
    incidents = sorted(incidents, key=lambda i: i.time)
    if not incidents:
        return []
    tol = int(same_within * 1e9)
    known: dict[tuple[str, str], list[int]] = {}
    for i in read(store, None, incidents[0].time - tol, incidents[-1].time + tol + 1, type_):
        known.setdefault((i.kind, i.entity), []).append(i.time)
    new = []
    for i in incidents:
        times = known.setdefault((i.kind, i.entity), [])
        if all(abs(i.time - t) > tol for t in times):
            new.append(i)
            times.append(i.time)
    store.write([to_point(i, source, type_) for i in new])
    return new


def _first_true_runs(df: pl.DataFrame, key: str, cond: pl.Expr, min_s: float, now_us: int) -> list[tuple[str, int]]:
    """(entity, start µs) of each run where `cond` holds for at least min_s: until the next sample that
    breaks it, or until now when none has yet."""
    if df.is_empty():
        return []
    d = df.sort([key, "time"]).select(key, pl.col("time").cast(pl.Int64).alias("t"), cond.fill_null(False).alias("c"))
    d = d.with_columns((pl.col("c") != pl.col("c").shift(1)).over(key).fill_null(True).cum_sum().over(key).alias("run"))
    runs = d.group_by([key, "run"]).agg(pl.col("c").first(), pl.col("t").min().alias("start")).sort([key, "run"])
    runs = runs.with_columns(pl.col("start").shift(-1).over(key).fill_null(now_us).alias("end"))
    hits = runs.filter(pl.col("c") & (pl.col("end") - pl.col("start") >= min_s * 1e6))
    return [(r[key], r["start"]) for r in hits.iter_rows(named=True)]


def detect(store: Store, start: int, now: int, rules: DetectionRules) -> list[Incident]:
    """Incidents that telemetry in [start, now) shows, by the rules above (times in ns)."""
    now_us = now // 1000
    out: list[Incident] = []
    smart = store.query("smart_device", start, now)
    if not smart.is_empty() and "serial_no" in smart.columns:
        if "health_ok" in smart.columns:
            for ent, t in _first_true_runs(smart, "serial_no", pl.col("health_ok").not_(), 0, now_us):
                out.append(Incident(t * 1000, "disk", ent, "smart_health_failed"))
        out += _vanished_disks(smart, store.query("system", start, now), now_us, rules.disk_vanished_after)
    out += _unreachable_hosts(store, start, now, rules.host_unreachable_after)
    iface = store.query("interface", start, now)
    if not iface.is_empty() and {"ifOperStatus", "ifAdminStatus", "ifName"} <= set(iface.columns):
        # The device is the configured target name (`source`), never sysName: that comes from the network.
        iface = iface.with_columns(pl.concat_str([pl.col("source"), pl.col("ifName")], separator="/").alias("_link"))
        cond = (pl.col("ifOperStatus") == 2) & (pl.col("ifAdminStatus") == 1)
        for ent, t in _first_true_runs(iface, "_link", cond, rules.interface_down_after, now_us):
            out.append(Incident(t * 1000, "network", ent, "link_down_admin_up"))
    return out


def _vanished_disks(smart: pl.DataFrame, system: pl.DataFrame, now_us: int, after_s: float) -> list[Incident]:
    """Serials whose last report is older than `after_s` while their host kept reporting (other disks, or
    its `system` telemetry): a disk gone with its host is the host's incident, not the disk's."""
    if "host" not in smart.columns:
        return []
    t = pl.col("time").cast(pl.Int64)
    last_disk = smart.group_by(["host", "serial_no"]).agg(t.max().alias("last"))
    seen = [smart.select("host", t.alias("t"))]
    if not system.is_empty() and "host" in system.columns:
        seen.append(system.select("host", t.alias("t")))
    last_host = pl.concat(seen).group_by("host").agg(pl.col("t").max().alias("host_last"))
    j = last_disk.join(last_host, on="host")
    gone = j.filter(
        (pl.col("host_last") - pl.col("last") >= after_s * 1e6) & (now_us - pl.col("last") >= after_s * 1e6)
    )
    return [Incident(r["last"] * 1000, "disk", r["serial_no"], "disk_vanished") for r in gone.iter_rows(named=True)]


def _unreachable_hosts(store: Store, start: int, now: int, after_s: float) -> list[Incident]:
    """Gaps longer than `after_s` in a host's `system` telemetry, including one still open at `now`."""
    sysm = store.query("system", start, now)
    if sysm.is_empty() or "host" not in sysm.columns:
        return []
    d = sysm.select("host", pl.col("time").cast(pl.Int64).alias("t")).unique().sort(["host", "t"])
    d = d.with_columns(pl.col("t").shift(-1).over("host").fill_null(now // 1000).alias("next"))
    gaps = d.filter(pl.col("next") - pl.col("t") > after_s * 1e6)
    return [Incident(r["t"] * 1000, "host", r["host"], "unreachable") for r in gaps.iter_rows(named=True)]


def summarize(incidents: Sequence[Incident]) -> dict[str, int]:
    """Count per kind, for command output."""
    out: dict[str, int] = {}
    for i in incidents:
        out[i.kind] = out.get(i.kind, 0) + 1
    return out
