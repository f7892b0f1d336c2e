"""A small, realistic fleet for the dashboard tests: six hours of every measurement the dashboards read.

Names follow what pmaintd's collectors, forecaster and action engine write (Telegraf schema for telemetry;
`pmaintd_*` for pmaintd's own outputs). Entity names are the awkward real kind: interface names with
slashes and dots (`Ethernet1/1`, `Gi0/0/1.100`), a disk serial with a dash.
"""

from __future__ import annotations

import math
from pathlib import Path

from pmaintd.collect.smart import report_points
from pmaintd.collect.smart_parse import parse
from pmaintd.forecast.incidents import to_point as incident_point
from pmaintd.forecast.labels import Incident
from pmaintd.forecast.scoring import INSUFFICIENT, Forecast, level_of
from pmaintd.telemetry import ANOMALY, Point, interface_entity

NS = 1_000_000_000
STEP = 300 * NS
STEPS = 72  # six hours at 5-minute steps

HOSTS = ("db-01", "web-02")
DISKS = (("db-01", "sda", "ZA1234-XY"), ("db-01", "sdb", "ZA5678"), ("web-02", "nvme0n1", "S4EWNX0N"))
SWITCH = "sw-core-1"
IFACES = ("Ethernet1/1", "Gi0/0/1.100")
FAILING_DISK = "ZA1234-XY"
NEW_DISK = "WD-NEW0001"
# A real failing drive: smartctl -a of a MAXTOR 4K080H4 (health FAILED, 499 reallocated, 338 pending), from the
# recorded outputs under tests/collect/smart/testdata (see its PROVENANCE.md and MANIFEST.csv).
RECORDED_SMART = (
    Path(__file__).resolve().parents[1]
    / "collect/smart/testdata/smartctl/gsmartcontrol__smartmon-site__MAXTOR-1.txt.health_failed.txt"
)
RECORDED_HOST, RECORDED_DEVICE = "web-02", "sdb"
FLAPPING_IF = "Gi0/0/1.100"
FLAPS = (40, 42, 60, 61)
"""Steps at which the flapping interface changes state (its ifLastChange moves)."""


def telemetry(start: int) -> list[Point]:
    pts: list[Point] = []
    for k in range(STEPS):
        t = start + k * STEP
        wave = 0.5 + 0.4 * math.sin(k / 12)
        for i, h in enumerate(HOSTS):
            pts.append(
                Point("cpu", {"host": h, "cpu": "cpu-total"}, {"usage_idle": 100 - 60 * wave, "usage_user": 40.0}, t)
            )
            pts.append(
                Point("mem", {"host": h}, {"used_percent": 40 + k * 0.5 * (i == 0), "available_percent": 50.0}, t)
            )
            pts.append(Point("system", {"host": h}, {"load1": 6 * wave, "n_cpus": 8}, t))
            pts.append(
                Point(
                    "edac",
                    {"host": h, "controller": "mc0", "mc_name": "Skylake Socket#0 IMC#0"},
                    {"ce_count": (k * k // 40) if i == 0 else 1, "ue_count": 0},
                    t,
                )
            )
            pts.append(Point("temp", {"host": h, "sensor": "coretemp_package_id_0"}, {"temp": 50 + 10 * wave}, t))
            pts.append(
                Point(
                    "diskio",
                    {"host": h, "name": "sda" if i == 0 else "nvme0n1"},
                    {"io_time": k * 120_000, "reads": k * 1000, "writes": k * 3000},
                    t,
                )
            )
        for j, ifname in enumerate(IFACES):
            failing = ifname == FLAPPING_IF
            pts.append(
                Point(
                    "interface",
                    {"source": SWITCH, "sysName": SWITCH, "ifName": ifname, "ifDescr": ifname, "ifIndex": str(j + 1)},
                    {
                        "ifHCInOctets": k * 3_000_000_000,
                        "ifHCOutOctets": k * 2_000_000_000,
                        "ifInErrors": (k * k * 3) if failing else k // 30,
                        "ifOutErrors": k if failing else 0,
                        "ifInDiscards": k * 2,
                        "ifOutDiscards": k,
                        "ifOperStatus": 2 if failing and (40 <= k < 42 or k == 60) else 1,
                        "ifAdminStatus": 1,
                        "ifHighSpeed": 10000,
                        # sysUpTime ticks at the last state change: moves at each flap.
                        "ifLastChange": 1000 + 100 * sum(1 for f in FLAPS if failing and k >= f),
                    },
                    t,
                )
            )
            pts.append(
                Point(
                    "snmp_sensor",
                    {
                        "source": SWITCH,
                        "sysName": SWITCH,
                        "sensor": f"{ifname} Rx Power Sensor",
                        "sensor_index": str(100 + j),
                        "sensor_type": "dBm",
                        "mib": "ENTITY-SENSOR-MIB",
                        "ifName": ifname,
                    },
                    {
                        "value": -25 - (k if failing else 0),
                        "scale": 9,
                        "precision": 1,
                        "status": 1,
                        "reading": -2.5 - (0.1 * k if failing else 0.0),
                    },
                    t,
                )
            )
        pts.append(
            Point(
                "snmp_sensor",
                {
                    "source": SWITCH,
                    "sysName": SWITCH,
                    "sensor": "Switch chassis",
                    "sensor_index": "1",
                    "sensor_type": "celsius",
                    "mib": "ENTITY-SENSOR-MIB",
                },
                {"value": 41, "scale": 9, "precision": 0, "status": 1, "reading": 41.0 + wave},
                t,
            )
        )
        if k % 6 == 0:  # SMART every 30 minutes
            for host, dev, serial in DISKS:
                bad = serial == FAILING_DISK
                tags = {"host": host, "device": dev, "model": "ST4000DM000", "serial_no": serial, "wwn": ""}
                pts.append(
                    Point(
                        "smart_device",
                        tags,
                        {
                            "health_ok": True,
                            "temp_c": 36 + k // 24,
                            "reallocated_sectors_count": (8 + k * 2) if bad else 0,
                            "pending_sector_count": (k // 6) if bad else 0,
                            "udma_crc_errors": 3 if bad else 0,
                            "media_errors": 0,
                            "power_on_hours": 21_000 + k // 12,
                        },
                        t,
                    )
                )
                for attr_id, name, raw in (
                    (5, "Reallocated_Sector_Ct", 8 + k * 2 if bad else 0),
                    (9, "Power_On_Hours", 21_000),
                ):
                    pts.append(
                        Point(
                            "smart_attribute",
                            tags | {"id": str(attr_id), "name": name},
                            {"raw_value": raw, "value": 100, "worst": 100, "threshold": 10},
                            t,
                        )
                    )
        if k % 6 == 0:  # the recorded drive, parsed by pmaintd's SMART parser as its collector would
            pts += report_points(parse(RECORDED_SMART.read_bytes()), RECORDED_HOST, RECORDED_DEVICE, 0, t)
    return pts


def forecasts(start: int) -> list[Point]:
    """Hourly forecasts per entity, made into points by pmaintd's scorer (`Forecast.to_point`): the failing
    disk and the flapping link climb over the threshold; a disk installed an hour ago has too little history
    to score, so it has a level and no probability."""
    entities = [("disk", s, h, 168.0) for h, _d, s in DISKS]
    entities += [("host", h, h, 24.0) for h in HOSTS]
    entities += [("network", interface_entity(SWITCH, i), SWITCH, 24.0) for i in IFACES]
    threshold = 0.4
    out = []
    for k in range(0, STEPS, 12):
        for kind, entity, host, horizon in entities:
            rising = entity in (FAILING_DISK, interface_entity(SWITCH, FLAPPING_IF))
            p = min(0.95, 0.1 + k / STEPS) if rising else 0.02 + 0.01 * (k % 3)
            reasons = [{"feature": "reallocated_sectors_count__delta_24h", "value": 2.0 * k, "contribution": 1.7}]
            out.append(
                Forecast(
                    kind,
                    entity,
                    host,
                    p,
                    level_of(p, threshold),
                    threshold,
                    horizon,
                    f"{kind}-20261101T000000",
                    start + k * STEP,
                    reasons,
                )
            )
    out.append(
        Forecast(
            "disk",
            NEW_DISK,
            "db-01",
            None,
            INSUFFICIENT,
            threshold,
            168.0,
            "disk-20261101T000000",
            start + (STEPS - 1) * STEP,
        )
    )
    return [f.to_point() for f in out]


def outcomes(start: int) -> list[Point]:
    """Incidents and anomaly scores (pmaintd's own outputs besides forecasts)."""
    t_fail = start + (STEPS - 2) * STEP
    pts = [
        incident_point(Incident(t_fail, "network", interface_entity(SWITCH, FLAPPING_IF), "link_down"), "auto"),
        incident_point(Incident(t_fail, "disk", FAILING_DISK), "operator"),  # recorded without a cause
    ]
    for k in range(0, STEPS, 6):
        score = {"score": 0.1 + k / STEPS, "metric": "mem_used_percent"}
        pts.append(Point(ANOMALY, {"kind": "host", "entity": HOSTS[0]}, score, start + k * STEP))
    return pts


ACTION_STEPS = (
    # (minutes after start, id, policy, action, kind, entity, host, states in order)
    (60, 1, "disk-out", "ceph-osd-out", "disk", FAILING_DISK, "db-01", ("proposed", "auto", "running", "succeeded")),
    (180, 2, "disk-out", "ceph-osd-out", "disk", FAILING_DISK, "db-01", ("proposed", "auto", "running", "succeeded")),
    (200, 3, "host-drain", "k8s-drain", "host", "db-01", "db-01", ("proposed", "approved", "running", "failed")),
    (300, 4, "host-drain", "k8s-drain", "host", "web-02", "web-02", ("proposed",)),
    (
        320,
        5,
        "link-shut",
        "lb-drain",
        "network",
        interface_entity(SWITCH, FLAPPING_IF),
        SWITCH,
        ("proposed", "observed"),
    ),
)


def action_records(start: int) -> list[tuple[int, dict[str, object]]]:
    """(time, audit record) per state transition, as pmaintd's action engine records them; `action_point`
    (pmaintd.act.audit) turns each into the `pmaintd_action` point the engine writes."""
    out = []
    for minute, action_id, policy, action, kind, entity, host, states in ACTION_STEPS:
        prev = ""
        for n, state in enumerate(states):
            rec = {
                "id": action_id,
                "policy": policy,
                "action": action,
                "kind": kind,
                "entity": entity,
                "host": host,
                "state": state,
                "from": prev,
                "probability": 0.81,
                "horizon_hours": 24.0,
                "message": f"{action} on {entity}: {prev or 'new'} -> {state}",
                "run_on": host,
            }
            out.append((start + (minute + n) * 60 * NS, rec))
            prev = state
    return out
