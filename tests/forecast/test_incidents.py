"""Automatic incidents from telemetry, recording and reading them back, false-alarm labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmaintd.forecast import incidents as inc
from pmaintd.forecast.labels import Incident
from pmaintd.simulate import NS, FleetSpec, simulate
from pmaintd.store.sqlite import SqliteStore
from pmaintd.telemetry import Point

START = 1_700_000_000 * NS
H = 3600 * NS


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "s.db", retention_s=10 * 365 * 86400)
    yield s
    s.close()


def test_detects_every_simulated_failure_and_nothing_else(store: SqliteStore) -> None:
    spec = FleetSpec(
        hosts=10,
        days=4,
        step_s=600,
        seed=5,
        host_failure_fraction=0.4,
        link_failure_fraction=0.4,
        disk_failure_fraction=0.3,
    )
    batches, failures = simulate(spec, START)
    for b in batches:
        store.write(b)
    end = START + int(spec.days * 86400) * NS
    found = inc.detect(
        store,
        START,
        end,
        inc.DetectionRules(host_unreachable_after=1800, interface_down_after=1200, disk_vanished_after=3 * 3600),
    )
    got = {(i.kind, i.entity) for i in found}
    want = {(f.kind, f.entity) for f in failures if f.time < end - 3 * H}
    assert want <= got
    assert got <= {(f.kind, f.entity) for f in failures}
    for i in found:  # detected within one poll step (host, link) or one SMART poll (disk) of the truth
        truth = next(f for f in failures if (f.kind, f.entity) == (i.kind, i.entity))
        slack = 2 * H if i.kind == "disk" else 2 * spec.step_s * NS
        assert abs(i.time - truth.time) <= slack, (i, truth)


def test_health_check_failure_is_an_incident(store: SqliteStore) -> None:
    tags = {"host": "h", "device": "sda", "serial_no": "S1", "model": "M"}
    store.write(
        [
            Point("smart_device", tags, {"health_ok": True}, START),
            Point("smart_device", tags, {"health_ok": False}, START + H),
            Point("smart_device", tags, {"health_ok": False}, START + 2 * H),
        ]
    )
    found = inc.detect(store, START, START + 3 * H, inc.DetectionRules())
    assert [(i.kind, i.entity, i.time, i.cause) for i in found] == [("disk", "S1", START + H, "smart_health_failed")]


def test_brief_link_flap_is_not_an_incident(store: SqliteStore) -> None:
    tags = {"source": "sw1", "sysName": "sw1", "ifName": "Eth1"}
    pts = [
        Point("interface", tags, {"ifOperStatus": 2 if k == 3 else 1, "ifAdminStatus": 1}, START + k * 60 * NS)
        for k in range(10)
    ]
    store.write(pts)
    assert inc.detect(store, START, START + 600 * NS, inc.DetectionRules(interface_down_after=300)) == []


def test_record_is_idempotent_and_false_alarms_are_not_failures(store: SqliteStore) -> None:
    a = Incident(START, "host", "h1", "crash")
    assert inc.record(store, [a], source="operator") == [a]
    assert inc.record(store, [a], source="operator") == []
    fa = Incident(START + H, "host", "h2", "forecast was wrong")
    inc.record(store, [fa], source="operator", type_=inc.FALSE_ALARM)
    assert inc.read(store) == [a]
    assert inc.read(store, type_=inc.FALSE_ALARM) == [fa]
    assert inc.read(store, kind="disk") == []
