"""Optical power in dBm for every vendor: Arista EOS's ENTITY-SENSOR-MIB watts become dBm at collection.

Against snmpsim serving the real DCS-7150S recording (tests/collect/snmp/testdata); expected values are
computed here from the recording's raw value, scale and precision, and the interface of each transceiver
sensor is found through ENTITY-MIB containment (sensor -> ... -> "Xcvr Slot N", whose entPhysicalParentRelPos
is the front-panel port, ifIndex N on this fixed-configuration switch), not from the sensor's name, which is
what the profile reads.
"""

from __future__ import annotations

import bz2
import json
import math
import time
from pathlib import Path

import pytest

from pmaintd.collect.snmp import DBM_FLOOR, SNMP_SENSOR, is_optical_watts, watts_to_dbm
from pmaintd.config import StoreConfig
from pmaintd.forecast.inputs import network_input
from pmaintd.store import open_store
from pmaintd.store.sqlite import SqliteStore
from tests.collect.snmp import snmprec
from tests.collect.snmp.helpers import collector
from tests.conftest import SNMP_RECORDINGS, running
from tests.grafana.grafana_sim import InfluxQL, format_selection, interpolate, rows

ROOT = Path(__file__).resolve().parents[3]

DEVICE = "arista-dcs-7150s"
SENSOR = "1.3.6.1.2.1.99.1.1.1"  # entPhySensorEntry: .1 type, .2 scale, .3 precision, .4 value
ENT = "1.3.6.1.2.1.47.1.1.1.1"  # entPhysicalEntry: .2 descr, .4 containedIn, .6 parentRelPos
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
WATTS = 6
XCVR_SLOTS = 1100300000  # "Xcvr Slot Container" in this recording


def _mw(value: int, scale: int, precision: int) -> float:
    """ENTITY-SENSOR watts (SensorDataScale: 8 milli, 9 units) to milliwatts."""
    return value * 1000.0 ** (scale - 9) / 10.0**precision * 1000.0


def _expected_dbm(value: int, scale: int, precision: int) -> float:
    mw = _mw(value, scale, precision)
    return max(-40.0, 10 * math.log10(mw)) if mw > 0 else -40.0


def _interface_of(rec: dict[str, snmprec.Value], index: str) -> str | None:
    """The ifName of the port whose transceiver holds sensor `index`, through ENTITY-MIB containment."""
    node = int(index)
    while node:
        parent = rec.get(f"{ENT}.4.{node}")
        if parent == XCVR_SLOTS:
            return str(rec[f"{IF_NAME}.{rec[f'{ENT}.6.{node}']}"])
        node = int(parent) if parent else 0
    return None


def _poll(address: str, community: str) -> list:
    coll = collector([{"name": DEVICE, "address": address, "community": community}], timeout="10s", retries=1)
    return coll.collect(coll.targets()[0])


@pytest.fixture(scope="module")
def recording() -> dict[str, snmprec.Value]:
    return snmprec.load(SNMP_RECORDINGS / f"{DEVICE}.snmprec.bz2")


@pytest.fixture(scope="module")
def points(snmpsim) -> list:
    return _poll(snmpsim.address, DEVICE)


@pytest.mark.service
def test_arista_transceiver_power_is_dbm(points, recording):
    """Every recorded watts row is transceiver Tx/Rx power (18 of them): stored as dBm computed from the raw
    value, scale and precision; the raw fields are kept as the agent sent them."""
    sensors = {p.tags["sensor_index"]: p for p in points if p.measurement == SNMP_SENSOR}
    types = snmprec.column(recording, f"{SENSOR}.1")
    watts = [i for i, t in types.items() if t == WATTS]
    assert len(watts) == 18
    for idx in watts:
        p = sensors[idx]
        value, scale, precision = (recording[f"{SENSOR}.{c}.{idx}"] for c in (4, 2, 3))
        assert p.tags["sensor_type"] == "dBm", p.tags
        assert p.tags["ifName"] == _interface_of(recording, idx)
        assert p.fields["reading"] == pytest.approx(_expected_dbm(value, scale, precision), abs=1e-9)
        assert (p.fields["value"], p.fields["scale"], p.fields["precision"]) == (value, scale, precision)
    # The recording's own examples: Ethernet5 Tx 6015 at milli/4 = 0.6015 mW; Ethernet50 Rx 4 = 0.0004 mW,
    # a near-dark receiver that must stay above the floor (-34 dBm, not -40).
    tx5 = sensors["100305212"]
    assert tx5.tags["sensor"] == "DOM TX Power Sensor for Ethernet5"
    assert tx5.fields["reading"] == pytest.approx(10 * math.log10(0.6015))
    assert sensors["100350213"].fields["reading"] == pytest.approx(10 * math.log10(0.0004))
    assert DBM_FLOOR < sensors["100350213"].fields["reading"] < -30


@pytest.mark.service
def test_other_sensors_keep_their_unit_and_transceiver_sensors_name_their_interface(points, recording):
    sensors = {p.tags["sensor_index"]: p for p in points if p.measurement == SNMP_SENSOR}
    names = {1: "other", 2: "unknown", 3: "voltsAC", 4: "voltsDC", 5: "amperes", 7: "hertz", 8: "celsius",
             9: "percentRH", 10: "rpm", 11: "cmm", 12: "truthvalue"}  # ENTITY-SENSOR-MIB EntitySensorDataType
    types = snmprec.column(recording, f"{SENSOR}.1")
    compared = 0
    for idx, t in types.items():
        p = sensors[idx]
        assert p.tags.get("ifName") == _interface_of(recording, idx), idx
        if t == WATTS:
            continue
        value, scale, precision = (recording[f"{SENSOR}.{c}.{idx}"] for c in (4, 2, 3))
        assert p.tags["sensor_type"] == names[t]
        assert p.fields["reading"] == pytest.approx(value * 1000.0 ** (scale - 9) / 10.0**precision)
        compared += 1
    assert compared == len(types) - 18 > 70
    # DOM temperature, voltage and bias of Ethernet5 are tied to it too (the network model's temp_c).
    assert {sensors[i].tags["sensor_type"] for i in ("100305201", "100305202", "100305211")} == {
        "celsius", "voltsDC", "amperes"}
    assert sensors["100711103"].tags.get("ifName") is None  # PSU output current: no interface


@pytest.mark.service
def test_network_input_gets_rx_dbm_for_arista_links(points, recording, tmp_path):
    """Collected points through the real embedded store into the network model's input builder: each Arista
    link with a transceiver has rx_dbm (the Rx power) and temp_c (the module temperature)."""
    store = SqliteStore(tmp_path / "pmaintd.db")
    try:
        store.write(points)
        frame = network_input(store, None, None)
    finally:
        store.close()
    by_link = {r["link"]: r for r in frame.iter_rows(named=True)}
    expected_rx = {}
    for idx, t in snmprec.column(recording, f"{SENSOR}.1").items():
        descr = str(recording[f"{ENT}.2.{idx}"])
        if t == WATTS and "RX" in descr:
            raw = [recording[f"{SENSOR}.{c}.{idx}"] for c in (4, 2, 3)]
            expected_rx[f"{DEVICE}/{_interface_of(recording, idx)}"] = _expected_dbm(*raw)
    assert len(expected_rx) == 9
    for link, dbm in expected_rx.items():
        assert by_link[link]["rx_dbm"] == pytest.approx(dbm), link
        assert by_link[link]["temp_c"] is not None
        assert by_link[link]["in_errors"] is not None  # the same link as the interface counters
    assert by_link[f"{DEVICE}/Ethernet5"]["rx_dbm"] == pytest.approx(10 * math.log10(0.4025))
    assert by_link[f"{DEVICE}/Ethernet5"]["temp_c"] == pytest.approx(22.9)
    without = [link for link, r in by_link.items() if link not in expected_rx and r["rx_dbm"] is not None]
    assert without == []


@pytest.mark.service
def test_grafana_optical_power_panel_shows_arista_in_dbm(points, recording, influxd, tmp_path):
    """The committed network dashboard's "Optical power" query, run against a real InfluxDB holding the
    collected points (Grafana's variable substitution by tests/grafana/grafana_sim.py, as no Grafana server
    can run here): one series per Arista Tx/Rx sensor, in dBm, and nothing else."""
    database = "pmaintd_optics_test"
    influxd.query(f'CREATE DATABASE "{database}"')
    store = open_store(StoreConfig(kind="influxdb", url=influxd.url, database=database, api="v1"), tmp_path)
    try:
        store.write(points)
    finally:
        store.close()
    dash = json.loads((ROOT / "grafana" / "dashboards" / "pmaintd-network.json").read_text())
    panel = next(p for p in dash["panels"] if p["title"] == "Optical power")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    values = {"device": format_selection([DEVICE], variables["device"]["allValue"]),
              "ifname": format_selection(None, variables["ifname"]["allValue"])}
    now_ms = time.time_ns() // 1_000_000
    got = {}
    for target in panel["targets"]:
        query = interpolate(target["query"], now_ms - 3_600_000, now_ms + 60_000, "5m", values)
        for r in rows(InfluxQL(influxd.url, database).run(query)):
            got[r["sensor"]] = r["mean"]
    expected = {}
    for idx, t in snmprec.column(recording, f"{SENSOR}.1").items():
        if t == WATTS:
            raw = [recording[f"{SENSOR}.{c}.{idx}"] for c in (4, 2, 3)]
            expected[str(recording[f"{ENT}.2.{idx}"])] = pytest.approx(_expected_dbm(*raw))
    assert len(expected) == 18
    assert got == expected


def _derived_recording(tmp_path) -> tuple:
    """The real recording with (1) Ethernet50's Rx power set to 0 (a dark receiver) and Ethernet52's to -1
    (a miscalibrated module), and (2) an 'Output power sensor' in watts added to each power supply, as larger
    EOS switches report: its value is the recorded output voltage x output current (precision 2, units)."""
    text = bz2.decompress((SNMP_RECORDINGS / f"{DEVICE}.snmprec.bz2").read_bytes()).decode()
    rec = snmprec.load(SNMP_RECORDINGS / f"{DEVICE}.snmprec.bz2")
    changed = {f"{SENSOR}.4.100350213": "2|0", f"{SENSOR}.4.100352213": "2|-1"}
    added, psu_watts = {}, {}
    for psu in ("1007111", "1007211"):
        volts, amps = rec[f"{SENSOR}.4.{psu}05"], rec[f"{SENSOR}.4.{psu}03"]  # both at precision 2
        raw = round(volts / 100 * amps / 100 * 100)
        idx = f"{psu}06"
        psu_watts[idx] = raw / 100
        added |= {f"{SENSOR}.1.{idx}": "2|6", f"{SENSOR}.2.{idx}": "2|9", f"{SENSOR}.3.{idx}": "2|2",
                  f"{SENSOR}.4.{idx}": f"2|{raw}", f"{SENSOR}.5.{idx}": "2|1",
                  f"{ENT}.2.{idx}": "4x|" + b"Output power sensor".hex(), f"{ENT}.7.{idx}": "4|"}
    comments, lines = [], []
    for line in text.splitlines():
        oid = line.split("|", 1)[0]
        if line.startswith("#"):
            comments.append(line)
        else:
            lines.append(f"{oid}|{changed[oid]}" if oid in changed else line)
    lines += [f"{oid}|{v}" for oid, v in added.items()]
    lines.sort(key=lambda ln: tuple(int(x) for x in ln.split("|", 1)[0].split(".")))  # snmpsim needs OID order
    path = tmp_path / "derived.snmprec"
    path.write_text("\n".join(comments + lines) + "\n")
    return path, psu_watts


@pytest.mark.service
def test_no_light_is_the_floor_and_power_supply_watts_stay_watts(tmp_path):
    from tests import services

    path, psu_watts = _derived_recording(tmp_path)
    (tmp_path / "sim").mkdir()
    with running(lambda d: services.start_snmpsim(d, [path]), tmp_path / "sim") as sim:
        points = _poll(sim.address, "derived")
    sensors = {p.tags["sensor_index"]: p for p in points if p.measurement == SNMP_SENSOR}
    for idx, raw in (("100350213", 0), ("100352213", -1)):
        p = sensors[idx]
        assert (p.tags["sensor_type"], p.fields["reading"], p.fields["value"]) == ("dBm", -40.0, raw)
    for idx, watts in psu_watts.items():
        p = sensors[idx]
        assert (p.tags["sensor"], p.tags["sensor_type"]) == ("Output power sensor", "watts")
        assert "ifName" not in p.tags
        assert p.fields["reading"] == pytest.approx(watts)
    assert len(psu_watts) == 2


def test_watts_to_dbm():
    assert watts_to_dbm(0.001) == pytest.approx(0.0)  # 1 mW
    assert watts_to_dbm(0.0006015) == pytest.approx(-2.2076, abs=1e-4)
    assert watts_to_dbm(1e-7) == pytest.approx(-40.0)  # 0.1 uW: the DOM's least significant bit
    for dark in (0.0, -0.0, -1e-7, 1e-9):
        assert watts_to_dbm(dark) == DBM_FLOOR == -40.0
        assert math.isfinite(watts_to_dbm(dark))


@pytest.mark.parametrize(("tags", "optical"), [
    ({"sensor_type": "watts", "ifName": "Ethernet5", "sensor": "DOM RX Power Sensor for Ethernet5"}, True),
    ({"sensor_type": "watts", "ifName": "Ethernet49/1", "sensor": "DOM Tx Power Sensor for Ethernet49/1"}, True),
    ({"sensor_type": "watts", "ifName": "et-0/0/1", "sensor": "et-0/0/1 Rx1 power"}, True),
    ({"sensor_type": "watts", "ifName": "Gi1/0/1", "sensor": "Gi1/0/1 Receive Power Sensor"}, True),
    ({"sensor_type": "watts", "sensor": "DOM RX Power Sensor for Ethernet5"}, False),  # no interface
    ({"sensor_type": "watts", "sensor": "Output power sensor"}, False),  # a power supply
    ({"sensor_type": "watts", "ifName": "Ethernet5", "sensor": "PoE power sensor for Ethernet5"}, False),
    ({"sensor_type": "watts", "ifName": "Ethernet5", "sensor": "Transceiver module power draw"}, False),
    ({"sensor_type": "dBm", "ifName": "Ethernet5", "sensor": "Ethernet5 Receive Power Sensor"}, False),
    ({"sensor_type": "amperes", "ifName": "Ethernet5", "sensor": "DOM TX Bias Sensor for Ethernet5"}, False),
])
def test_is_optical_watts(tags, optical):
    assert is_optical_watts(tags) is optical
