"""Forecast input: JSON lines from operators and `pmaintd_forecast` points from the real sqlite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmaintd.act.policy import Forecast, ForecastError, latest_forecasts, low_confidence, parse_forecast_lines
from pmaintd.store.sqlite import SqliteStore
from pmaintd.telemetry import FORECAST, Point

NS = 1_000_000_000


def test_latest_forecast_per_entity_from_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    t0 = 1_800_000_000 * NS

    def pt(entity: str, p: float, t: int, kind: str = "disk") -> Point:
        return Point(FORECAST, {"kind": kind, "entity": entity, "host": "srv1", "model_version": "v1"},
                     {"probability": p, "horizon_hours": 168.0, "level": "high", "threshold": 0.5,
                      "reasons": '["smart_5_raw +0.31", "smart_197_raw +0.12"]'}, t)  # fmt: skip

    store.write([pt("S1", 0.2, t0), pt("S1", 0.8, t0 + 60 * NS), pt("S2", 0.4, t0 + 30 * NS),
                 pt("old", 0.9, t0 - 3600 * NS)])  # fmt: skip
    got = sorted(latest_forecasts(store, since_ns=t0 - 60 * NS), key=lambda f: f.entity)
    assert [(f.entity, f.probability) for f in got] == [("S1", 0.8), ("S2", 0.4)]
    s1 = got[0]
    assert s1.kind == "disk" and s1.host == "srv1" and s1.horizon_hours == 168.0
    assert s1.reasons == ("smart_5_raw +0.31", "smart_197_raw +0.12")
    assert s1.time == pytest.approx((t0 + 60 * NS) / NS)
    assert latest_forecasts(store, since_ns=t0 + 3600 * NS) == []
    store.close()


def test_json_lines_with_optional_fields() -> None:
    [a, b] = parse_forecast_lines([
        '{"kind": "host", "entity": "web1", "probability": 0.7, "horizon_hours": 24}',
        "",
        "# comment",
        '{"kind": "disk", "entity": "S1", "probability": 1, "horizon_hours": 168, "reasons": ["x"], '
        '"host": "srv1", "confidence": 0.4, "time": "2026-11-29T12:00:00Z"}',
    ])  # fmt: skip
    assert a.host is None and a.reasons == () and a.window_end == pytest.approx(a.time + 86400)
    assert b.host == "srv1" and b.time == 1795953600.0 and b.window_end == b.time + 168 * 3600
    assert low_confidence(b, 0.5) is not None and low_confidence(a, 0.5) is None
    assert low_confidence(b, None) is None


@pytest.mark.parametrize(("obj", "problem"), [
    ({"kind": "host", "entity": "a", "probability": "high", "horizon_hours": 1}, "probability 'high' is not"),
    ({"kind": "host", "entity": "a", "probability": True, "horizon_hours": 1}, "not a finite number"),
    ({"kind": "host", "entity": 3, "probability": 0.5, "horizon_hours": 1}, "must be strings"),
    ({"kind": "host", "entity": "a", "probability": 0.5, "horizon_hours": 1, "time": "yesterday"}, "RFC 3339"),
])  # fmt: skip
def test_bad_forecasts(obj: dict, problem: str) -> None:
    with pytest.raises(ForecastError, match=problem):
        Forecast.from_mapping(obj, "x")


def test_stale_forecast_is_not_acted_on(tmp_path: Path) -> None:
    from pmaintd import config
    from pmaintd.act.engine import ActionEngine

    p = tmp_path / "c.toml"
    p.write_text('[actions.a]\nrun_on = "local"\ncommand = "touch RAN"\n[[policies]]\nname = "p"\nkind = "host"\n'
                 'min_probability = 0.5\naction = "a"\nmode = "auto"\n[limits]\nmax_fleet_fraction = 1.0\n'
                 .replace("RAN", str(tmp_path / "ran")))  # fmt: skip
    engine = ActionEngine(config.load(p), tmp_path / "state")
    old = Forecast.from_mapping({"kind": "host", "entity": "web1", "probability": 0.99, "horizon_hours": 24,
                                 "time": "2020-01-01T00:00:00Z"})  # fmt: skip
    [d] = engine.run_once([old])
    assert d.outcome == "stale" and "2020-01-02T00:00:00" in d.reason
    assert not (tmp_path / "ran").exists() and engine.list() == []
    engine.close()
