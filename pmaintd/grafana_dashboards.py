"""The Grafana dashboards pmaintd ships, generated from one description so every panel is built the same way.

The JSON under `grafana/dashboards/` is the product (Grafana's file provider and `pmaintd grafana provision`
read it); this module is how it is written, and a test checks the committed JSON equals what it generates.
Regenerate after editing:

    python -m pmaintd.grafana_dashboards grafana/dashboards

Every query is raw InfluxQL, because InfluxDB 1.x, 2.x (DBRP mapping) and 3.x all answer InfluxQL on
`/query`, and every panel names the datasource by its fixed uid so provisioning by file and by API give the
same result. Template variables filter with `=~ /^${var:regex}$/`: the explicit `regex` format makes every
Grafana version escape each selected value the same way, slashes included (interface names such as
`Ethernet1/1` would otherwise end the regex literal), and `All` is the custom all-value `.*`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE_UID = "pmaintd-influx"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
TAG = "pmaintd"
GRID_WIDTH = 24

Json = dict[str, Any]


def _rx(tag: str, var: str) -> str:
    """A tag filter on a template variable (see the module docstring for why the format is explicit)."""
    return f'"{tag}" =~ /^${{{var}:regex}}$/'


def _target(query: str, ref: str, fmt: str = "time_series", alias: str | None = None) -> Json:
    t: Json = {"refId": ref, "datasource": DATASOURCE, "query": query, "rawQuery": True, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


def query_variable(name: str, label: str, query: str, multi: bool = True) -> Json:
    """A template variable filled by an InfluxQL SHOW TAG VALUES query, refreshed on time-range change."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def action_annotations(filters: str = "") -> list[Json]:
    """Actions on every dashboard: from `pmaintd_action` in InfluxDB (works with file provisioning alone),
    and, off by default, the annotations `[grafana]` posts through the API (tagged `pmaintd`); turning on
    both would show each action twice."""
    where = "WHERE $timeFilter" + (f" AND {filters}" if filters else "")
    query = f'SELECT "message", "id", "probability", "kind", "entity", "action", "state" FROM "pmaintd_action" {where}'
    columns = {"textColumn": "message", "titleColumn": "action", "tagsColumn": "kind,entity,action,state"}
    return [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        {
            "name": "pmaintd actions",
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": "orange",
            "query": query,
            **columns,
            "target": {
                "refId": "Anno",
                "datasource": DATASOURCE,
                "query": query,
                "rawQuery": True,
                "fromAnnotations": True,
                "limit": 200,
                **columns,
            },
        },
        {
            "name": "pmaintd actions (API annotations)",
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": False,
            "hide": False,
            "iconColor": "purple",
            "target": {"type": "tags", "tags": [TAG], "matchAny": False, "limit": 200, "refId": "Tags"},
        },
    ]


@dataclass
class Dashboard:
    """Panels are laid out left to right in rows of 24 grid columns, so gridPos never overlaps."""

    uid: str
    title: str
    description: str
    variables: list[Json] = field(default_factory=list)
    annotation_filter: str = ""
    panels: list[Json] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_h: int = 0

    def _place(self, w: int, h: int) -> Json:
        if self._x + w > GRID_WIDTH:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = self._place(GRID_WIDTH, 1)
        self._x, self._y, self._row_h = 0, self._y + 1, 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": pos,
                "panels": [],
            }
        )

    def panel(
        self,
        kind: str,
        title: str,
        description: str,
        queries: list[str],
        *,
        w: int = 12,
        h: int = 8,
        fmt: str = "time_series",
        alias: str | None = None,
        unit: str | None = None,
        minmax: tuple[float | None, float | None] = (None, None),
        options: Json | None = None,
        custom: Json | None = None,
        overrides: list[Json] | None = None,
        transformations: list[Json] | None = None,
        thresholds: list[tuple[float | None, str]] | None = None,
    ) -> None:
        defaults: Json = {}
        if unit:
            defaults["unit"] = unit
        if minmax[0] is not None:
            defaults["min"] = minmax[0]
        if minmax[1] is not None:
            defaults["max"] = minmax[1]
        if custom:
            defaults["custom"] = custom
        if thresholds:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": color, "value": value} for value, color in thresholds],
            }
        p: Json = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": self._place(w, h),
            "targets": [_target(q, chr(ord("A") + i), fmt, alias) for i, q in enumerate(queries)],
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            p["transformations"] = transformations
        self.panels.append(p)

    def to_json(self) -> Json:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": [TAG],
            "editable": True,
            "graphTooltip": 1,
            "timezone": "browser",
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "1m",
            "time": {"from": "now-24h", "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "links": [
                {
                    "title": "pmaintd",
                    "type": "dashboards",
                    "tags": [TAG],
                    "asDropdown": True,
                    "includeVars": False,
                    "keepTime": True,
                    "icon": "external link",
                    "targetBlank": False,
                    "tooltip": "",
                    "url": "",
                }
            ],
            "annotations": {"list": action_annotations(self.annotation_filter)},
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


# Shared visual vocabulary.
PROB = {"unit": "percentunit", "minmax": (0.0, 1.0)}
RISK_STEPS: list[tuple[float | None, str]] = [(None, "green"), (0.3, "yellow"), (0.6, "red")]
LINES = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "spanNulls": True, "showPoints": "never"}
BARS = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "stacking": {"mode": "normal", "group": "A"}}
LEGEND_TABLE = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]}}


def _sort(field_name: str, desc: bool = True) -> Json:
    return {"id": "sortBy", "options": {"sort": [{"field": field_name, "desc": desc}]}}


def _organize(exclude: list[str], rename: dict[str, str] | None = None) -> Json:
    return {
        "id": "organize",
        "options": {"excludeByName": dict.fromkeys(exclude, True), "renameByName": rename or {}},
    }


def _prob_column(name: str) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [
            {"id": "unit", "value": "percentunit"},
            {"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}},
            {
                "id": "thresholds",
                "value": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in RISK_STEPS]},
            },
        ],
    }


def _json_view(name: str) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [
            {"id": "custom.cellOptions", "value": {"type": "json-view"}},
            {"id": "custom.width", "value": 420},
        ],
    }


def fleet() -> Dashboard:
    d = Dashboard(
        "pmaintd-fleet",
        "pmaintd / Fleet risk overview",
        "What will fail, why, and how sure pmaintd is: the latest forecast per entity with its reasons.",
        variables=[
            query_variable("kind", "Kind", 'SHOW TAG VALUES FROM "pmaintd_forecast" WITH KEY = "kind"'),
            query_variable(
                "entity",
                "Entity",
                'SHOW TAG VALUES FROM "pmaintd_forecast" WITH KEY = "entity" WHERE ' + _rx("kind", "kind"),
            ),
        ],
        annotation_filter=_rx("kind", "kind") + " AND " + _rx("entity", "entity"),
    )
    sel = f"$timeFilter AND {_rx('kind', 'kind')} AND {_rx('entity', 'entity')}"
    latest = (
        f'SELECT last("probability") AS "probability" FROM "pmaintd_forecast" WHERE {sel} GROUP BY "kind", "entity"'
    )
    d.panel(
        "stat",
        "Entities forecast to fail",
        "Entities whose latest forecast is at or above its model's alarm threshold.",
        [
            'SELECT count("p") AS "at risk" FROM (SELECT last("probability") - last("threshold") AS "p" '
            f'FROM "pmaintd_forecast" WHERE {sel} GROUP BY "kind", "entity") WHERE "p" >= 0'
        ],
        w=6,
        h=5,
        fmt="table",
        thresholds=[(None, "green"), (1, "red")],
        options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "background"},
    )
    d.panel(
        "bargauge",
        "Highest risk by kind",
        "The highest latest probability among the entities of each kind.",
        [f'SELECT max("probability") FROM ({latest}) GROUP BY "kind"'],
        w=10,
        h=5,
        fmt="time_series",
        alias="$tag_kind",
        thresholds=RISK_STEPS,
        options={"orientation": "horizontal", "displayMode": "gradient", "reduceOptions": {"calcs": ["lastNotNull"]}},
        **PROB,  # type: ignore[arg-type]
    )
    d.panel(
        "stat",
        "Entities forecast, by kind",
        "How many entities of each kind pmaintd forecast in this time range.",
        [f'SELECT count("probability") FROM ({latest}) GROUP BY "kind"'],
        w=8,
        h=5,
        alias="$tag_kind",
        options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "none", "textMode": "value_and_name"},
    )
    d.panel(
        "table",
        "Top risks, with reasons",
        "Latest forecast per entity, highest probability first. Reasons are the model's top feature "
        "contributions (LightGBM pred_contrib) for that forecast.",
        [
            'SELECT last("probability") AS "probability", last("threshold") AS "threshold", '
            'last("horizon_hours") AS "horizon (h)", last("level") AS "level", last("reasons") AS "reasons" '
            f'FROM "pmaintd_forecast" WHERE {sel} GROUP BY "kind", "entity", "host", "model_version"'
        ],
        w=24,
        h=10,
        fmt="table",
        transformations=[_sort("probability"), {"id": "limit", "options": {"limitField": 50}}, _organize(["Time"])],
        overrides=[_prob_column("probability"), _json_view("reasons")],
        options={"showHeader": True, "cellHeight": "sm"},
    )
    d.panel(
        "timeseries",
        "Risk by kind over time",
        "Highest forecast probability of each kind per interval.",
        [
            'SELECT max("probability") FROM "pmaintd_forecast" '
            f'WHERE {sel} GROUP BY time($__interval), "kind" fill(none)'
        ],
        alias="$tag_kind",
        custom=LINES,
        thresholds=RISK_STEPS,
        **PROB,  # type: ignore[arg-type]
    )
    d.panel(
        "timeseries",
        "Forecasts over time, per entity",
        "Each entity's forecast probability; pick entities above to compare them.",
        [
            'SELECT mean("probability") FROM "pmaintd_forecast" '
            f'WHERE {sel} GROUP BY time($__interval), "kind", "entity" fill(none)'
        ],
        alias="$tag_kind $tag_entity",
        custom=LINES,
        options=LEGEND_TABLE,
        **PROB,  # type: ignore[arg-type]
    )
    d.panel(
        "table",
        "Incidents",
        "Recorded failures (by an operator, from a file, or detected) and false alarms: what the models learn from.",
        [
            'SELECT "count", "cause", "kind", "entity", "type", "source" FROM "pmaintd_incident" '
            f"WHERE $timeFilter AND {_rx('kind', 'kind')} AND {_rx('entity', 'entity')} ORDER BY time DESC LIMIT 200"
        ],
        fmt="table",
    )
    d.panel(
        "timeseries",
        "Anomaly scores",
        "Unsupervised anomaly score per entity, where an anomaly detector is configured.",
        [
            'SELECT max("score") FROM "pmaintd_anomaly" '
            f'WHERE {sel} GROUP BY time($__interval), "kind", "entity" fill(none)'
        ],
        alias="$tag_kind $tag_entity",
        custom=LINES,
    )
    return d


def disks() -> Dashboard:
    host_var = query_variable("host", "Host", 'SHOW TAG VALUES FROM "smart_device" WITH KEY = "host"')
    serial_var = query_variable(
        "serial",
        "Disk serial",
        'SHOW TAG VALUES FROM "smart_device" WITH KEY = "serial_no" WHERE ' + _rx("host", "host"),
    )
    d = Dashboard(
        "pmaintd-disks",
        "pmaintd / Disks",
        "SMART health and trends per disk (by serial number, never by device name), and each disk's forecast.",
        variables=[host_var, serial_var],
        annotation_filter="\"kind\" = 'disk' AND " + _rx("entity", "serial"),
    )
    sel = f"$timeFilter AND {_rx('host', 'host')} AND {_rx('serial_no', 'serial')}"
    d.panel(
        "table",
        "Disks: latest SMART state",
        "One row per disk; growth columns are the change over the selected time range.",
        [
            'SELECT last("health_ok") AS "health ok", last("temp_c") AS "temp °C", '
            'last("reallocated_sectors_count") AS "reallocated", last("pending_sector_count") AS "pending", '
            'spread("reallocated_sectors_count") AS "reallocated growth", '
            'spread("pending_sector_count") AS "pending growth", '
            'last("udma_crc_errors") AS "CRC errors", last("power_on_hours") AS "power-on h" '
            f'FROM "smart_device" WHERE {sel} GROUP BY "host", "device", "model", "serial_no"'
        ],
        w=24,
        h=9,
        fmt="table",
        transformations=[_sort("reallocated growth"), _organize(["Time"])],
        options={"showHeader": True, "cellHeight": "sm"},
    )
    d.panel(
        "timeseries",
        "Predicted failure risk",
        "Forecast probability of failure within the disk model's horizon (default 7 days).",
        [
            'SELECT max("probability") FROM "pmaintd_forecast" WHERE $timeFilter AND "kind" = \'disk\' AND '
            f'{_rx("entity", "serial")} GROUP BY time($__interval), "entity" fill(none)'
        ],
        alias="$tag_entity",
        custom=LINES,
        thresholds=RISK_STEPS,
        options=LEGEND_TABLE,
        **PROB,  # type: ignore[arg-type]
    )
    for title, fld, desc in (
        (
            "Reallocated sectors",
            "reallocated_sectors_count",
            "SMART 5: sectors remapped to spares. Growth predicts failure.",
        ),
        ("Pending sectors", "pending_sector_count", "SMART 197: unreadable sectors waiting for remap."),
    ):
        d.panel(
            "timeseries",
            title,
            desc,
            [f'SELECT max("{fld}") FROM "smart_device" WHERE {sel} GROUP BY time($__interval), "serial_no" fill(none)'],
            alias="$tag_serial_no",
            custom=LINES,
            options=LEGEND_TABLE,
        )
    d.panel(
        "timeseries",
        "Reallocated + pending growth per interval",
        "New bad sectors per interval (counter increase); bursts are the strongest SMART warning.",
        [
            'SELECT non_negative_difference(max("reallocated_sectors_count")) AS "reallocated", '
            'non_negative_difference(max("pending_sector_count")) AS "pending" '
            f'FROM "smart_device" WHERE {sel} GROUP BY time($__interval), "serial_no" fill(none)'
        ],
        alias="$tag_serial_no $col",
        custom=BARS,
    )
    d.panel(
        "timeseries",
        "Temperature",
        "Drive temperature (SMART 194 / NVMe composite).",
        [f'SELECT mean("temp_c") FROM "smart_device" WHERE {sel} GROUP BY time($__interval), "serial_no" fill(none)'],
        alias="$tag_serial_no",
        unit="celsius",
        custom=LINES,
    )
    d.panel(
        "timeseries",
        "Interface CRC and media errors",
        "UDMA CRC errors point at cables and backplanes; NVMe media errors at the flash itself.",
        [
            'SELECT non_negative_difference(max("udma_crc_errors")) AS "crc", '
            'non_negative_difference(max("media_errors")) AS "media" '
            f'FROM "smart_device" WHERE {sel} GROUP BY time($__interval), "serial_no" fill(none)'
        ],
        alias="$tag_serial_no $col",
        custom=BARS,
    )
    d.panel(
        "timeseries",
        "Disk busy (io_time)",
        "Share of time each block device had I/O in flight (Telegraf diskio io_time, ms per s).",
        [
            'SELECT non_negative_derivative(max("io_time"), 1s) / 1000 FROM "diskio" '
            f'WHERE $timeFilter AND {_rx("host", "host")} GROUP BY time($__interval), "host", "name" fill(none)'
        ],
        alias="$tag_host $tag_name",
        unit="percentunit",
        custom=LINES,
    )
    d.panel(
        "table",
        "SMART attributes (raw)",
        "Latest raw value of every SMART attribute of the selected disks.",
        [
            'SELECT last("raw_value") AS "raw", last("value") AS "value", last("worst") AS "worst", '
            f'last("threshold") AS "threshold" FROM "smart_attribute" WHERE {sel} GROUP BY "serial_no", "id", "name"'
        ],
        w=24,
        h=10,
        fmt="table",
        transformations=[_organize(["Time"])],
    )
    return d


def hosts() -> Dashboard:
    d = Dashboard(
        "pmaintd-hosts",
        "pmaintd / Hosts",
        "Host health signals the host model uses (memory errors and pressure, load, temperatures) and its forecast.",
        variables=[query_variable("host", "Host", 'SHOW TAG VALUES FROM "cpu" WITH KEY = "host"')],
        annotation_filter="\"kind\" = 'host' AND " + _rx("entity", "host"),
    )
    hsel = f"$timeFilter AND {_rx('host', 'host')}"
    d.panel(
        "timeseries",
        "Predicted failure risk",
        "Forecast probability of host failure within the host model's horizon (default 24 h).",
        [
            'SELECT max("probability") FROM "pmaintd_forecast" WHERE $timeFilter AND "kind" = \'host\' AND '
            f'{_rx("entity", "host")} GROUP BY time($__interval), "entity" fill(none)'
        ],
        alias="$tag_entity",
        custom=LINES,
        thresholds=RISK_STEPS,
        options=LEGEND_TABLE,
        **PROB,  # type: ignore[arg-type]
    )
    d.panel(
        "timeseries",
        "Correctable memory errors (EDAC)",
        "New correctable ECC errors per interval; a rising rate precedes uncorrectable errors and crashes.",
        [
            'SELECT non_negative_difference(max("ce_count")) AS "corrected", '
            'non_negative_difference(max("ue_count")) AS "uncorrected" '
            f'FROM "edac" WHERE {hsel} GROUP BY time($__interval), "host" fill(none)'
        ],
        alias="$tag_host $col",
        custom=BARS,
    )
    d.panel(
        "timeseries",
        "CPU busy",
        "100 − idle, all CPUs.",
        [
            'SELECT 100 - mean("usage_idle") FROM "cpu" '
            f'WHERE {hsel} AND "cpu" = \'cpu-total\' GROUP BY time($__interval), "host" fill(none)'
        ],
        alias="$tag_host",
        unit="percent",
        minmax=(0, 100),
        custom=LINES,
    )
    d.panel(
        "timeseries",
        "Memory used",
        "A steady climb towards 100 % is a leak heading for the OOM killer.",
        [f'SELECT mean("used_percent") FROM "mem" WHERE {hsel} GROUP BY time($__interval), "host" fill(none)'],
        alias="$tag_host",
        unit="percent",
        minmax=(0, 100),
        custom=LINES,
    )
    d.panel(
        "timeseries",
        "Load per CPU",
        "1-minute load average divided by the number of CPUs.",
        [
            'SELECT mean("load1") / mean("n_cpus") FROM "system" '
            f'WHERE {hsel} GROUP BY time($__interval), "host" fill(none)'
        ],
        alias="$tag_host",
        custom=LINES,
    )
    d.panel(
        "timeseries",
        "Temperatures",
        "hwmon sensors (Telegraf `temp`).",
        [f'SELECT max("temp") FROM "temp" WHERE {hsel} GROUP BY time($__interval), "host", "sensor" fill(none)'],
        alias="$tag_host $tag_sensor",
        unit="celsius",
        custom=LINES,
    )
    return d


def network() -> Dashboard:
    dev_var = query_variable("device", "Device", 'SHOW TAG VALUES FROM "interface" WITH KEY = "source"')
    if_var = query_variable(
        "ifname", "Interface", 'SHOW TAG VALUES FROM "interface" WITH KEY = "ifName" WHERE ' + _rx("source", "device")
    )
    d = Dashboard(
        "pmaintd-network",
        "pmaintd / Network",
        "Interface errors, discards, optics and link flaps per device/interface, and the network forecast.",
        variables=[dev_var, if_var],
        annotation_filter="\"kind\" = 'network'",
    )
    sel = f"$timeFilter AND {_rx('source', 'device')} AND {_rx('ifName', 'ifname')}"
    per_if = 'GROUP BY time($__interval), "source", "ifName" fill(none)'
    d.panel(
        "timeseries",
        "Predicted failure risk",
        "Forecast probability of a link or device failure within the network model's horizon (default 24 h).",
        [
            'SELECT max("probability") FROM "pmaintd_forecast" WHERE $timeFilter AND "kind" = \'network\' AND '
            '"entity" =~ /^${device:regex}(\\/${ifname:regex})?$/ GROUP BY time($__interval), "entity" fill(none)'
        ],
        alias="$tag_entity",
        custom=LINES,
        thresholds=RISK_STEPS,
        options=LEGEND_TABLE,
        **PROB,  # type: ignore[arg-type]
    )
    d.panel(
        "timeseries",
        "Errors per second",
        "ifInErrors / ifOutErrors as rates: CRC and framing errors precede failing optics and cables.",
        [
            'SELECT non_negative_derivative(max("ifInErrors"), 1s) AS "in", '
            f'non_negative_derivative(max("ifOutErrors"), 1s) AS "out" FROM "interface" WHERE {sel} {per_if}'
        ],
        alias="$tag_source/$tag_ifName $col",
        unit="pps",
        custom=LINES,
        options=LEGEND_TABLE,
    )
    d.panel(
        "timeseries",
        "Discards per second",
        "ifInDiscards / ifOutDiscards as rates: congestion or buffer exhaustion.",
        [
            'SELECT non_negative_derivative(max("ifInDiscards"), 1s) AS "in", '
            f'non_negative_derivative(max("ifOutDiscards"), 1s) AS "out" FROM "interface" WHERE {sel} {per_if}'
        ],
        alias="$tag_source/$tag_ifName $col",
        unit="pps",
        custom=LINES,
    )
    d.panel(
        "timeseries",
        "Traffic",
        "ifHCInOctets / ifHCOutOctets as bits per second.",
        [
            'SELECT non_negative_derivative(max("ifHCInOctets"), 1s) * 8 AS "in", '
            f'non_negative_derivative(max("ifHCOutOctets"), 1s) * 8 AS "out" FROM "interface" WHERE {sel} {per_if}'
        ],
        alias="$tag_source/$tag_ifName $col",
        unit="bps",
        custom=LINES,
    )
    d.panel(
        "timeseries",
        "Optical power",
        "Transceiver receive/transmit power (dBm) from the device's sensor tables; a falling Rx precedes link loss.",
        [
            'SELECT mean("reading") FROM "snmp_sensor" WHERE $timeFilter AND '
            f"{_rx('source', 'device')} AND {_rx('ifName', 'ifname')} AND \"sensor_type\" = 'dBm' "
            'GROUP BY time($__interval), "source", "sensor" fill(none)'
        ],
        alias="$tag_source $tag_sensor",
        unit="dBm",
        custom=LINES,
    )
    d.panel(
        "timeseries",
        "Device temperatures",
        "Chassis, module and transceiver temperatures (°C) the device reports.",
        [
            'SELECT max("reading") FROM "snmp_sensor" WHERE $timeFilter AND '
            f"{_rx('source', 'device')} AND \"sensor_type\" = 'celsius' "
            'GROUP BY time($__interval), "source", "sensor" fill(none)'
        ],
        alias="$tag_source $tag_sensor",
        unit="celsius",
        custom=LINES,
    )
    d.panel(
        "state-timeline",
        "Link state",
        "ifOperStatus over time (1 up, 2 down, 7 lowerLayerDown).",
        [f'SELECT last("ifOperStatus") FROM "interface" WHERE {sel} {per_if.replace("fill(none)", "fill(previous)")}'],
        alias="$tag_source/$tag_ifName",
        overrides=[],
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
        thresholds=[(None, "green"), (2, "red")],
    )
    d.panel(
        "table",
        "Link flaps",
        "Interfaces whose ifLastChange moved in this range (each move is a state change), most first.",
        [
            'SELECT count("changed") AS "flaps" FROM (SELECT difference(last("ifLastChange")) AS "changed" '
            f'FROM "interface" WHERE {sel} GROUP BY time($__interval), "source", "ifName") '
            'WHERE "changed" != 0 GROUP BY "source", "ifName"'
        ],
        fmt="table",
        transformations=[_sort("flaps"), _organize(["Time"])],
    )
    d.panel(
        "table",
        "Interfaces: errors in range",
        "Total new errors and discards per interface over the selected time range.",
        [
            'SELECT spread("ifInErrors") AS "in errors", spread("ifOutErrors") AS "out errors", '
            'spread("ifInDiscards") AS "in discards", spread("ifOutDiscards") AS "out discards", '
            'last("ifOperStatus") AS "oper", last("ifHighSpeed") AS "Mbit/s" '
            f'FROM "interface" WHERE {sel} GROUP BY "source", "ifName"'
        ],
        w=12,
        fmt="table",
        transformations=[_sort("in errors"), _organize(["Time"])],
    )
    return d


def actions() -> Dashboard:
    d = Dashboard(
        "pmaintd-actions",
        "pmaintd / Actions",
        "What pmaintd did about its forecasts: every action step, what waits for approval, and healing that repeats.",
        variables=[
            query_variable("kind", "Kind", 'SHOW TAG VALUES FROM "pmaintd_action" WITH KEY = "kind"'),
            query_variable(
                "entity",
                "Entity",
                'SHOW TAG VALUES FROM "pmaintd_action" WITH KEY = "entity" WHERE ' + _rx("kind", "kind"),
            ),
        ],
        annotation_filter=_rx("kind", "kind") + " AND " + _rx("entity", "entity"),
    )
    sel = f"$timeFilter AND {_rx('kind', 'kind')} AND {_rx('entity', 'entity')}"
    d.panel(
        "timeseries",
        "Action steps by state",
        "Action steps per interval, stacked by state (proposed, approved, running, succeeded, failed, undone...).",
        [f'SELECT count("id") FROM "pmaintd_action" WHERE {sel} GROUP BY time($__interval), "state" fill(none)'],
        w=24,
        h=7,
        alias="$tag_state",
        custom=BARS,
    )
    d.panel(
        "table",
        "Waiting for approval",
        "Actions whose latest step is `proposed` in approve mode: run `pmaintd actions approve ID`.",
        [
            'SELECT "id", "probability", "message" FROM (SELECT last("id") AS "id", "state", "probability", "message" '
            f'FROM "pmaintd_action" WHERE {sel} GROUP BY "kind", "entity", "policy", "action", "host") '
            'WHERE "state" = \'proposed\' GROUP BY "kind", "entity", "policy", "action", "host"'
        ],
        w=24,
        h=7,
        fmt="table",
    )
    d.panel(
        "table",
        "Timeline",
        "Every action step, newest first: what was done to which entity, under which policy, and the outcome.",
        [
            'SELECT "id", "kind", "entity", "policy", "action", "state", "host", "probability", "message" '
            f'FROM "pmaintd_action" WHERE {sel} ORDER BY time DESC LIMIT 500'
        ],
        w=24,
        h=10,
        fmt="table",
    )
    d.panel(
        "table",
        "Recurring healing",
        "Entities healed more than once in this range: the action treats a symptom, the root cause is not fixed.",
        [
            'SELECT "healed" FROM (SELECT count("id") AS "healed" FROM "pmaintd_action" '
            f'WHERE {sel} AND "state" = \'succeeded\' GROUP BY "kind", "entity", "action") WHERE "healed" > 1 '
            'GROUP BY "kind", "entity", "action"'
        ],
        fmt="table",
        transformations=[_sort("healed"), _organize(["Time"])],
    )
    d.panel(
        "bargauge",
        "Outcomes by action",
        "Succeeded and failed runs per action kind in this range.",
        [
            'SELECT count("id") FROM "pmaintd_action" '
            f'WHERE {sel} AND ("state" = \'succeeded\' OR "state" = \'failed\') GROUP BY "action", "state"'
        ],
        alias="$tag_action $tag_state",
        options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["sum"]}},
    )
    return d


DASHBOARDS = {"fleet": fleet, "disks": disks, "hosts": hosts, "network": network, "actions": actions}


def build_all() -> dict[str, Json]:
    """File name (without .json) -> dashboard JSON."""
    return {name: make().to_json() for name, make in DASHBOARDS.items()}


def render(dashboard: Json) -> str:
    """The exact text committed: stable key order, two-space indent, trailing newline."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, dash in build_all().items():
        path = directory / f"pmaintd-{name}.json"
        path.write_text(render(dash), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "grafana/dashboards")):
        print(p)
