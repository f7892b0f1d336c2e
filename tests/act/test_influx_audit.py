"""Action transitions reach a real InfluxDB 1.x as `pmaintd_action` points that the Actions dashboard's
annotation query (InfluxQL, as Grafana sends it) reads back, hostile entity names included."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pmaintd import config
from pmaintd.act.engine import ActionEngine
from pmaintd.config import StoreConfig
from pmaintd.store import open_store
from tests.act.conftest import forecast, policy_toml
from tests.services import Influxd

pytestmark = pytest.mark.service


def test_transitions_are_queryable_in_influxdb(influxd: Influxd, tmp_path: Path) -> None:
    db = f"act_{uuid.uuid4().hex[:8]}"
    store = open_store(StoreConfig(kind="influxdb", url=influxd.url, database=db), tmp_path)
    p = tmp_path / "c.toml"
    p.write_text(f'[actions.a]\nrun_on = "local"\ncommand = "echo {{entity}} >> {tmp_path}/ran"\n'
                 f'{policy_toml("p", "a", "auto", kind="disk")}'
                 "[limits]\nmax_fleet_fraction = 1.0\n")  # fmt: skip
    engine = ActionEngine(config.load(p), tmp_path / "state", store)
    hostile = 'ZA1"; DROP DATABASE x; --'
    [d] = engine.run_once([forecast(hostile, 0.91, kind="disk")])
    assert d.state == "succeeded"
    engine.close()
    store.maintain()
    store.close()
    q = (
        'SELECT "message", "id", "probability", "kind", "entity", "action", "state" FROM "pmaintd_action" '
        "WHERE time > now() - 1h"
    )
    series = influxd.query(q, db=db)["results"][0]["series"][0]
    cols = series["columns"]
    rows = [dict(zip(cols, v, strict=True)) for v in series["values"]]
    assert [r["state"] for r in rows] == ["proposed", "auto", "running", "succeeded"]
    assert {r["entity"] for r in rows} == {hostile} and {r["id"] for r in rows} == {d.action_id}
    assert rows[-1]["message"] == "command succeeded (no verify command)" and rows[0]["probability"] == 0.91
