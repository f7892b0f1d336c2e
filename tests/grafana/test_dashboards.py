"""The shipped Grafana dashboards and provisioning files: structure, and every query run against a real InfluxDB.

No Grafana server can be installed here, so Grafana's part (substituting `$timeFilter`, `$__interval` and
template variables into the raw InfluxQL) is done by tests/grafana/grafana_sim.py; everything after that is
real: the queries go to a real `influxd` holding a small fleet that pmaintd's own store wrote.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pmaintd import grafana_dashboards as gd
from pmaintd.act.audit import action_point
from pmaintd.config import StoreConfig
from pmaintd.resources import shipped_path
from pmaintd.store import open_store
from pmaintd.telemetry import interface_entity
from tests.grafana import fleet_data
from tests.grafana.grafana_sim import InfluxQL, format_selection, interpolate, rows

ROOT = Path(__file__).resolve().parents[2]
DASH_DIR = ROOT / "grafana" / "dashboards"
PROV_DIR = ROOT / "grafana" / "provisioning"
EXPECTED_UIDS = {"pmaintd-fleet", "pmaintd-disks", "pmaintd-hosts", "pmaintd-network", "pmaintd-actions"}
DATABASE = "pmaintd_grafana_test"


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASH_DIR.glob("*.json"))}


def _targets(panel: dict[str, Any]) -> list[dict[str, Any]]:
    return panel.get("targets", [])


def _influx_annotations(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in dash["annotations"]["list"] if a.get("datasource", {}).get("type") == "influxdb"]


# ---------------------------------------------------------------- structure


def test_committed_json_is_what_the_generator_writes() -> None:
    built = {f"pmaintd-{name}.json": gd.render(d) for name, d in gd.build_all().items()}
    on_disk = {p.name: p.read_text() for p in DASH_DIR.glob("*.json")}
    assert on_disk == built, "regenerate: python -m pmaintd.grafana_dashboards grafana/dashboards"


def test_the_installed_package_ships_the_same_files() -> None:
    shipped = shipped_path("grafana", "dashboards")
    assert sorted(p.name for p in shipped.glob("*.json")) == sorted(_dashboards())


def test_dashboards_have_stable_uids_and_current_schema() -> None:
    dashes = _dashboards()
    assert {d["uid"] for d in dashes.values()} == EXPECTED_UIDS
    for name, d in dashes.items():
        assert d["schemaVersion"] >= 39, name
        assert d.get("id") is None, f"{name}: a provisioned dashboard must not carry a database id"
        assert "pmaintd" in d["tags"]
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"


def test_panels_do_not_overlap_and_fit_the_grid() -> None:
    for name, d in _dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, (name, p["title"], g)
            for cell in itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])):
                assert cell not in cells, f"{name}: {p['title']!r} overlaps {cells[cell]!r} at {cell}"
                cells[cell] = p["title"]


def test_every_query_is_raw_influxql_on_the_pmaintd_datasource() -> None:
    for name, d in _dashboards().items():
        queries = 0
        for p in d["panels"]:
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "influxdb", "uid": gd.DATASOURCE_UID}, (name, p["title"])
            assert _targets(p), f"{name}: {p['title']!r} has no query"
            for t in _targets(p):
                assert t["datasource"]["uid"] == gd.DATASOURCE_UID
                assert t["rawQuery"] is True and t["query"].startswith("SELECT ")
                assert "$timeFilter" in t["query"], f"{name}: {p['title']!r} is not bounded by the time picker"
                queries += 1
        for v in d["templating"]["list"]:
            assert v["datasource"]["uid"] == gd.DATASOURCE_UID and v["query"].startswith("SHOW TAG VALUES")
        annotations = _influx_annotations(d)
        assert len(annotations) == 1 and annotations[0]["target"]["rawQuery"] is True
        assert annotations[0]["tagsColumn"] == "kind,entity,action,state"
        assert queries >= 5, name


def test_template_variables_cover_host_and_entity() -> None:
    names = {d["uid"]: [v["name"] for v in d["templating"]["list"]] for d in _dashboards().values()}
    assert names["pmaintd-fleet"] == ["kind", "entity"]
    assert names["pmaintd-actions"] == ["kind", "entity"]
    assert names["pmaintd-disks"] == ["host", "serial"]
    assert names["pmaintd-hosts"] == ["host"]
    assert names["pmaintd-network"] == ["device", "ifname"]


def test_provisioning_files_point_at_the_datasource_the_dashboards_use() -> None:
    ds_files = sorted((PROV_DIR / "datasources").iterdir())
    assert [p.name for p in ds_files] == [
        "pmaintd-influxdb2.yaml.example",
        "pmaintd-influxdb3.yaml.example",
        "pmaintd.yaml",
    ]
    for path in ds_files:
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1
        (ds,) = doc["datasources"]
        assert ds["uid"] == gd.DATASOURCE_UID and ds["type"] == "influxdb" and ds["access"] == "proxy"
        assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"]
        if path.name != "pmaintd.yaml":
            # 2.x / 3.x: a token from a file, never inline
            assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
            assert ds["secureJsonData"]["httpHeaderValue1"].startswith("Token $__file{")
    prov = yaml.safe_load((PROV_DIR / "dashboards" / "pmaintd.yaml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/usr/share/pmaintd/grafana/dashboards"


# ---------------------------------------------------------------- every query against a real InfluxDB


@pytest.fixture(scope="module")
def fleet(influxd: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Six hours of a small fleet, written through pmaintd's InfluxDB store, ending now."""
    influxd.query(f'CREATE DATABASE "{DATABASE}"')
    end = time.time_ns()
    start = end - fleet_data.STEPS * fleet_data.STEP
    points = fleet_data.telemetry(start) + fleet_data.forecasts(start) + fleet_data.outcomes(start)
    points += [action_point(rec, t) for t, rec in fleet_data.action_records(start)]
    cfg = StoreConfig(kind="influxdb", url=influxd.url, database=DATABASE, api="v1")
    store = open_store(cfg, tmp_path_factory.mktemp("store-state"))
    try:
        store.write(points)
    finally:
        store.close()
    return {
        "db": InfluxQL(influxd.url, DATABASE),
        "start_ms": start // 1_000_000 - 60_000,
        "end_ms": end // 1_000_000 + 60_000,
    }


def _resolve(db: InfluxQL, dash: dict[str, Any], fleet: dict[str, Any], pick: dict[str, list[str]]) -> dict[str, str]:
    """Fill the variables in order, as Grafana does: each one's query may use the ones before it."""
    values: dict[str, str] = {}
    for v in dash["templating"]["list"]:
        q = interpolate(v["query"], fleet["start_ms"], fleet["end_ms"], "5m", values)
        options = db.tag_values(q)
        assert options, f"{dash['uid']}: variable ${v['name']} has no values ({q})"
        chosen = pick.get(v["name"])
        if chosen is not None:
            assert set(chosen) <= set(options), (v["name"], chosen, options)
        values[v["name"]] = format_selection(chosen, v["allValue"])
    return values


def _run_panels(db: InfluxQL, dash: dict[str, Any], fleet: dict[str, Any], values: dict[str, str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in dash["panels"]:
        for t in _targets(p):
            q = interpolate(t["query"], fleet["start_ms"], fleet["end_ms"], "5m", values)
            out.setdefault(p["title"], []).extend(db.run(q))
    for a in _influx_annotations(dash):
        out["annotation: " + a["name"]] = db.run(
            interpolate(a["target"]["query"], fleet["start_ms"], fleet["end_ms"], "5m", values)
        )
    return out


@pytest.mark.service
@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_every_panel_answers_with_rows_for_all_entities(fleet: dict[str, Any], uid: str) -> None:
    dash = next(d for d in _dashboards().values() if d["uid"] == uid)
    values = _resolve(fleet["db"], dash, fleet, {})
    results = _run_panels(fleet["db"], dash, fleet, values)
    empty = [title for title, series in results.items() if not rows(series)]
    assert not empty, f"{uid}: panels without data: {empty}"


def _panel(uid: str, title: str) -> dict[str, Any]:
    dash = next(d for d in _dashboards().values() if d["uid"] == uid)
    return next(p for p in dash["panels"] if p["title"] == title)


def _answer(fleet: dict[str, Any], uid: str, title: str, pick: dict[str, list[str]] | None = None) -> list[dict]:
    dash = next(d for d in _dashboards().values() if d["uid"] == uid)
    values = _resolve(fleet["db"], dash, fleet, pick or {})
    return rows(_run_panels(fleet["db"], dash, fleet, values)[title])


@pytest.mark.service
def test_fleet_overview_answers_what_will_fail(fleet: dict[str, Any]) -> None:
    at_risk = _answer(fleet, "pmaintd-fleet", "Entities forecast to fail")
    assert [r["at risk"] for r in at_risk] == [2]  # the failing disk and the flapping link
    top = _answer(fleet, "pmaintd-fleet", "Top risks, with reasons")
    assert len(top) == 3 + 2 + 2 + 1  # every entity once: disks, hosts, links, and the disk without history
    new = next(r for r in top if r["entity"] == fleet_data.NEW_DISK)
    assert new["level"] == "insufficient_history" and new["probability"] is None
    worst = max(top, key=lambda r: r["probability"] or 0.0)
    assert worst["entity"] in (fleet_data.FAILING_DISK, interface_entity(fleet_data.SWITCH, fleet_data.FLAPPING_IF))
    assert json.loads(worst["reasons"])[0]["feature"].startswith("reallocated_sectors_count")
    incidents = {r["entity"]: r for r in _answer(fleet, "pmaintd-fleet", "Incidents")}
    assert incidents[fleet_data.FAILING_DISK]["cause"] is None and incidents[fleet_data.FAILING_DISK]["count"] == 1
    assert incidents[interface_entity(fleet_data.SWITCH, fleet_data.FLAPPING_IF)]["source"] == "auto"
    by_kind = {r["kind"]: r["max"] for r in _answer(fleet, "pmaintd-fleet", "Highest risk by kind")}
    assert set(by_kind) == {"disk", "host", "network"} and by_kind["host"] < 0.1 < by_kind["disk"]


@pytest.mark.service
def test_entity_with_slash_and_dot_selects_exactly_that_interface(fleet: dict[str, Any]) -> None:
    pick = {"device": [fleet_data.SWITCH], "ifname": [fleet_data.FLAPPING_IF]}
    errors = _answer(fleet, "pmaintd-network", "Errors per second", pick)
    assert errors and {r["ifName"] for r in errors} == {fleet_data.FLAPPING_IF}
    risk = _answer(fleet, "pmaintd-network", "Predicted failure risk", pick)
    assert {r["entity"] for r in risk} == {interface_entity(fleet_data.SWITCH, fleet_data.FLAPPING_IF)}
    entity = interface_entity(fleet_data.SWITCH, fleet_data.FLAPPING_IF)
    forecasts = _answer(fleet, "pmaintd-fleet", "Forecasts over time, per entity", {"entity": [entity]})
    assert {r["entity"] for r in forecasts} == {entity}


@pytest.mark.service
def test_network_flaps_and_disk_growth(fleet: dict[str, Any]) -> None:
    flaps = _answer(fleet, "pmaintd-network", "Link flaps")
    assert [(r["ifName"], r["flaps"]) for r in flaps] == [(fleet_data.FLAPPING_IF, len(fleet_data.FLAPS))]
    disks = {r["serial_no"]: r for r in _answer(fleet, "pmaintd-disks", "Disks: latest SMART state")}
    assert set(disks) == {s for _h, _d, s in fleet_data.DISKS} | {"674119123435"}
    assert disks[fleet_data.FAILING_DISK]["reallocated growth"] > 0
    assert disks["ZA5678"]["reallocated growth"] == 0
    recorded = disks["674119123435"]  # values from the real smartctl output, through parser, store and query
    assert (recorded["health ok"], recorded["reallocated"], recorded["pending"]) == (False, 499, 338)
    assert (recorded["host"], recorded["device"], recorded["model"]) == ("web-02", "sdb", "MAXTOR 4K080H4")
    attrs = _answer(fleet, "pmaintd-disks", "SMART attributes (raw)", {"host": ["web-02"], "serial": ["674119123435"]})
    assert {r["serial_no"] for r in attrs} == {"674119123435"}
    assert {r["name"]: r["raw"] for r in attrs}["Reallocated_Sector_Ct"] == 499


@pytest.mark.service
def test_actions_pending_and_recurring(fleet: dict[str, Any]) -> None:
    pending = _answer(fleet, "pmaintd-actions", "Waiting for approval")
    assert [(r["id"], r["entity"]) for r in pending] == [(4, "web-02")]
    recurring = _answer(fleet, "pmaintd-actions", "Recurring healing")
    assert [(r["entity"], r["healed"]) for r in recurring] == [(fleet_data.FAILING_DISK, 2)]
    timeline = _answer(fleet, "pmaintd-actions", "Timeline")
    assert len(timeline) == sum(len(s[-1]) for s in fleet_data.ACTION_STEPS)
    notes = _answer(fleet, "pmaintd-actions", "annotation: pmaintd actions", {"kind": ["disk"]})
    assert {r["entity"] for r in notes} == {fleet_data.FAILING_DISK} and all(r["message"] for r in notes)
