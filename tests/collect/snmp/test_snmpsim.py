"""The SNMP collector against snmpsim serving real-device recordings (tests/collect/snmp/testdata).

Expected values are read from the recordings themselves (snmprec.py), never from pmaintd's output.
"""

from __future__ import annotations

import asyncio
import bz2
import math

import pytest

from pmaintd.collect.snmp import SNMP_SENSOR
from tests.collect.snmp import snmprec
from tests.collect.snmp.helpers import collector, poll_twice
from tests.conftest import SNMP_RECORDINGS, running

pytestmark = pytest.mark.service

IF_TABLE = "1.3.6.1.2.1.2.2.1"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1.1"
IF_FIELDS = {
    "ifType": f"{IF_TABLE}.3", "ifMtu": f"{IF_TABLE}.4", "ifSpeed": f"{IF_TABLE}.5",
    "ifAdminStatus": f"{IF_TABLE}.7", "ifOperStatus": f"{IF_TABLE}.8", "ifLastChange": f"{IF_TABLE}.9",
    "ifInOctets": f"{IF_TABLE}.10", "ifInUcastPkts": f"{IF_TABLE}.11", "ifInDiscards": f"{IF_TABLE}.13",
    "ifInErrors": f"{IF_TABLE}.14", "ifOutOctets": f"{IF_TABLE}.16", "ifOutUcastPkts": f"{IF_TABLE}.17",
    "ifOutDiscards": f"{IF_TABLE}.19", "ifOutErrors": f"{IF_TABLE}.20",
    "ifHCInOctets": f"{IF_X_TABLE}.6", "ifHCOutOctets": f"{IF_X_TABLE}.10", "ifHCInUcastPkts": f"{IF_X_TABLE}.7",
    "ifHCOutUcastPkts": f"{IF_X_TABLE}.11", "ifHighSpeed": f"{IF_X_TABLE}.15",
}
IF_TAGS = {"ifDescr": f"{IF_TABLE}.2", "ifName": f"{IF_X_TABLE}.1", "ifAlias": f"{IF_X_TABLE}.18"}
# (mib tag, sensor name suffix) -> the column holding the raw `value`
SENSOR_VALUE_COLUMNS = {
    "ENTITY-SENSOR-MIB": "1.3.6.1.2.1.99.1.1.1.4",
    "CISCO-ENVMON-MIB": "1.3.6.1.4.1.9.9.13.1.3.1.3",
    "CISCO-ENTITY-SENSOR-MIB": "1.3.6.1.4.1.9.9.91.1.1.1.1.4",
    "JUNIPER-MIB": "1.3.6.1.4.1.2636.3.1.13.1.7",
}
JUNIPER_DOM = {"rx power": "5", "tx bias": "6", "tx power": "7", "module temperature": "8"}

DEVICES = {
    "cisco-c3560": "cisco",
    "cisco-n5000": "cisco",
    "juniper-mx960": "juniper",
    "arista-dcs-7150s": "arista",
    "linux-centos7": "net-snmp",
}


@pytest.fixture(scope="module")
def polled(snmpsim):
    """Every recorded device polled once, concurrently, through the collector's own many-target path."""
    coll = collector(
        [{"name": d, "address": snmpsim.address, "community": d} for d in DEVICES], timeout="10s", retries=1
    )

    async def run():
        try:
            out = {}
            for t in coll.targets():
                out[t.name] = await coll.aprobe(t)
            return out
        finally:
            await coll.aclose()

    return asyncio.run(run())


def _recording(device: str) -> dict[str, snmprec.Value]:
    return snmprec.load(SNMP_RECORDINGS / f"{device}.snmprec.bz2")


@pytest.mark.parametrize("device", DEVICES)
def test_profile_matches_the_device(polled, device):
    rec = _recording(device)
    result = polled[device]
    assert result.match.profile.name == DEVICES[device]
    assert result.discovery.sys_object_id == rec["1.3.6.1.2.1.1.2.0"]
    assert result.discovery.sys_name == rec["1.3.6.1.2.1.1.5.0"]
    assert result.discovery.sys_descr == rec["1.3.6.1.2.1.1.1.0"]
    assert rec["1.3.6.1.2.1.1.2.0"] in result.match.reason


@pytest.mark.parametrize("device", DEVICES)
def test_interface_counters_equal_the_recording(polled, device):
    rec = _recording(device)
    points = [p for p in polled[device].points if p.measurement == "interface"]
    recorded_indexes = set(snmprec.column(rec, f"{IF_TABLE}.3"))
    assert {p.tags["ifIndex"] for p in points} == recorded_indexes
    assert points, "every recording here has interfaces"
    compared = 0
    for p in points:
        idx = p.tags["ifIndex"]
        assert p.tags["source"] == device
        assert p.tags["sysName"] == rec["1.3.6.1.2.1.1.5.0"]
        for name, col in IF_FIELDS.items():
            expected = rec.get(f"{col}.{idx}")
            assert p.fields.get(name) == expected, f"{device} ifIndex {idx} {name}"
            compared += expected is not None
        for tag, col in IF_TAGS.items():
            assert p.tags.get(tag) == (rec.get(f"{col}.{idx}") or None), f"{device} ifIndex {idx} tag {tag}"
    hc = snmprec.column(rec, f"{IF_X_TABLE}.6")
    assert sum("ifHCInOctets" in p.fields for p in points) == len(hc)
    assert compared > 10 * len(points) // 2


@pytest.mark.parametrize("device", DEVICES)
def test_sensor_values_equal_the_recording(polled, device):
    rec = _recording(device)
    sensors = [p for p in polled[device].points if p.measurement == SNMP_SENSOR]
    expected_rows = 0
    profile = DEVICES[device]
    if profile in ("arista", "net-snmp"):
        expected_rows += len(snmprec.column(rec, SENSOR_VALUE_COLUMNS["ENTITY-SENSOR-MIB"]))
    if profile == "cisco":
        expected_rows += len(snmprec.column(rec, SENSOR_VALUE_COLUMNS["CISCO-ENVMON-MIB"]))
        expected_rows += len(snmprec.column(rec, SENSOR_VALUE_COLUMNS["CISCO-ENTITY-SENSOR-MIB"]))
    if profile == "juniper":
        expected_rows += len(snmprec.column(rec, SENSOR_VALUE_COLUMNS["JUNIPER-MIB"]))
        for col in JUNIPER_DOM.values():
            expected_rows += len(snmprec.column(rec, f"1.3.6.1.4.1.2636.3.60.1.1.1.1.{col}"))
    assert len(sensors) == expected_rows
    for p in sensors:
        mib, idx = p.tags["mib"], p.tags["sensor_index"]
        if mib == "JUNIPER-DOM-MIB":
            kind = p.tags["sensor"].removeprefix(p.tags["ifName"] + " ")
            col = f"1.3.6.1.4.1.2636.3.60.1.1.1.1.{JUNIPER_DOM[kind]}"
            assert p.tags["ifName"] == rec[f"{IF_X_TABLE}.1.{idx}"]
        else:
            col = SENSOR_VALUE_COLUMNS[mib]
        assert p.fields["value"] == rec[f"{col}.{idx}"], f"{device} {mib} {idx}"


def test_sensor_names_types_and_readings(polled):
    """Spot checks against rows read from the recordings by hand (see testdata/PROVENANCE.md)."""
    by = {d: {(p.tags.get("mib"), p.tags.get("sensor_index")): p for p in polled[d].points
              if p.measurement == SNMP_SENSOR} for d in DEVICES}
    envmon = by["cisco-c3560"][("CISCO-ENVMON-MIB", "1005")]
    assert envmon.tags["sensor"] == "SW#1, Sensor#1, YELLOW "
    assert envmon.tags["sensor_type"] == "celsius"
    assert envmon.fields == {"value": 61, "threshold": 66, "ciscoEnvMonTemperatureState": 2, "reading": 61.0}
    # Arista: 'DOM TX Power Sensor for Ethernet5', raw 6015 watts, scale milli (8), precision 4 -> 0.6015 mW,
    # stored in dBm like every vendor's optics (test_optics.py covers all of them).
    dom = by["arista-dcs-7150s"][("ENTITY-SENSOR-MIB", "100305212")]
    assert dom.tags["sensor"] == "DOM TX Power Sensor for Ethernet5"
    assert (dom.tags["sensor_type"], dom.tags["ifName"]) == ("dBm", "Ethernet5")
    assert dom.fields["reading"] == pytest.approx(10 * math.log10(6015e-3 / 1e4 * 1000))
    cpu = by["arista-dcs-7150s"][("ENTITY-SENSOR-MIB", "100006001")]
    assert (cpu.tags["sensor"], cpu.tags["sensor_type"], cpu.fields["reading"]) == ("Cpu temp sensor", "celsius", 28.2)
    # Juniper DOM on xe-1/3/1 (ifIndex 615): Tx power -258 (0.01 dBm), bias 4723 uA.
    jdom = [p for p in polled["juniper-mx960"].points if p.tags.get("sensor", "").startswith("xe-1/3/1 ")]
    got = {p.tags["sensor"]: (p.tags["sensor_type"], p.fields["reading"]) for p in jdom}
    assert got["xe-1/3/1 tx power"] == ("dBm", pytest.approx(-2.58))
    assert got["xe-1/3/1 tx bias"] == ("amperes", pytest.approx(4723e-6))
    # NX-OS transceiver receive power is reported in dBm by CISCO-ENTITY-SENSOR-MIB.
    assert any(p.tags.get("sensor_type") == "dBm" for p in by["cisco-n5000"].values())


def test_host_resources_on_linux(polled):
    rec = _recording("linux-centos7")
    storage = {p.tags["hrStorageIndex"]: p for p in polled["linux-centos7"].points if p.measurement == "snmp_storage"}
    assert set(storage) == set(snmprec.column(rec, "1.3.6.1.2.1.25.2.3.1.5"))
    for idx, p in storage.items():
        assert p.fields["hrStorageSize"] == rec[f"1.3.6.1.2.1.25.2.3.1.5.{idx}"]
        assert p.fields["hrStorageUsed"] == rec[f"1.3.6.1.2.1.25.2.3.1.6.{idx}"]
        assert p.tags["hrStorageDescr"] == rec[f"1.3.6.1.2.1.25.2.3.1.3.{idx}"]
    cpus = {p.tags["hrDeviceIndex"]: p.fields["hrProcessorLoad"] for p in polled["linux-centos7"].points
            if p.measurement == "snmp_processor"}
    assert cpus == {k: v for k, v in snmprec.column(rec, "1.3.6.1.2.1.25.3.3.1.2").items()}
    disks = {p.tags["diskIODevice"]: p for p in polled["linux-centos7"].points if p.measurement == "snmp_diskio"}
    devices = snmprec.column(rec, "1.3.6.1.4.1.2021.13.15.1.1.2")
    assert set(disks) == set(devices.values()) and "sda" in disks
    for idx, dev in devices.items():
        for name, col in (("diskIONReadX", 12), ("diskIONWrittenX", 13), ("diskIOReads", 5), ("diskIOWrites", 6)):
            assert disks[dev].fields[name] == rec[f"1.3.6.1.4.1.2021.13.15.1.1.{col}.{idx}"], (dev, name)
    system = [p for p in polled["linux-centos7"].points if p.measurement == "snmp_system"]
    assert [p.fields["sysUpTime"] for p in system] == [rec["1.3.6.1.2.1.1.3.0"]]


def test_profile_override_and_sync_collect(snmpsim):
    """A target's `profile` replaces sysObjectID matching; `collect` (sync) gives the same interfaces."""
    coll = collector([{"name": "c", "address": snmpsim.address, "community": "cisco-c3560", "profile": "generic"}],
                     timeout="10s")
    target = coll.targets()[0]
    points = coll.collect(target)
    assert coll.status["c"].profile == "generic"
    assert coll.status["c"].up is True
    assert not [p for p in points if p.tags.get("mib") == "CISCO-ENVMON-MIB"]
    assert len([p for p in points if p.measurement == "interface"]) == 57


HOSTILE_SYSNAME = "core\"sw'01; rm -rf / #\n$(reboot) `id` \\ ,=tag"
HOSTILE_ALIAS = "uplink \"to\" 'dc2'\r\nDROP TABLE x; -- ünïcode ☃ ,= \\"


def test_hostile_strings_are_data(tmp_path):
    """A real recording (linux-centos7) with sysName and one ifAlias replaced by hostile strings (hex-encoded,
    as snmprec stores any octet string): the tags carry them byte for byte."""
    from tests import services

    src = bz2.decompress((SNMP_RECORDINGS / "linux-centos7.snmprec.bz2").read_bytes()).decode()
    lines = []
    for line in src.splitlines():
        oid = line.split("|", 1)[0]
        if oid == "1.3.6.1.2.1.1.5.0":
            line = f"{oid}|4x|{HOSTILE_SYSNAME.encode().hex()}"
        elif oid == f"{IF_X_TABLE}.18.2":
            line = f"{oid}|4x|{HOSTILE_ALIAS.encode().hex()}"
        lines.append(line)
    rec = tmp_path / "hostile.snmprec"
    rec.write_text("\n".join(lines) + "\n")
    (tmp_path / "sim").mkdir()
    with running(lambda d: services.start_snmpsim(d, [rec]), tmp_path / "sim") as sim:
        coll = collector([{"name": "evil", "address": sim.address, "community": "hostile"}], timeout="10s")
        points = coll.collect(coll.targets()[0])
    assert {p.tags["sysName"] for p in points} == {HOSTILE_SYSNAME}
    eth = [p for p in points if p.measurement == "interface" and p.tags["ifIndex"] == "2"]
    assert eth[0].tags["ifAlias"] == HOSTILE_ALIAS


@pytest.mark.parametrize("device", ["juniper-mx960", "arista-dcs-7150s"])
def test_later_polls_fetch_less_and_return_the_same(snmpsim, device):
    """The second poll of an agent sizes its requests from the first (row counts, answer size): it must
    return exactly the same points, receiving no more varbinds (these big tables gain little; see the snmpd
    test for small ones)."""
    coll = collector([{"name": device, "address": snmpsim.address, "community": device}], timeout="10s")
    first, second = poll_twice(coll)

    def shape(result):
        return sorted((p.measurement, sorted(p.tags.items()), sorted(p.fields.items())) for p in result.points
                      if p.measurement != "snmp_system")

    assert shape(second) == shape(first)
    assert second.varbinds <= first.varbinds
