"""Helpers for the action tests: configs written as TOML and loaded through the real config loader, an
engine on a real sqlite store in a temp state dir, and forecasts as the JSON lines operators write."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pmaintd import config
from pmaintd.act.engine import ActionEngine
from pmaintd.act.policy import Forecast
from pmaintd.store import open_store
from tests.services import Sshd


def host_toml(sshd: Sshd, name: str = "h1", known_hosts: Path | None = None) -> str:
    """A [[hosts]] entry for the loopback sshd fixture."""
    return f"""
[[hosts]]
name = "{name}"
transport = "ssh"
address = "{sshd.address}"
user = "{sshd.user}"
key_file = "{sshd.client_key}"
known_hosts = "{known_hosts or sshd.known_hosts}"
connect_timeout = "5s"
collect = []
"""


def policy_toml(name: str, action: str, mode: str, kind: str = "host", min_probability: float = 0.5) -> str:
    """A [[policies]] entry."""
    return f"""
[[policies]]
name = "{name}"
kind = "{kind}"
min_probability = {min_probability}
action = "{action}"
mode = "{mode}"
"""


def forecast(entity: str, probability: float = 0.9, kind: str = "host", **kw: object) -> Forecast:
    return Forecast.from_mapping({"kind": kind, "entity": entity, "probability": probability,
                                  "horizon_hours": 24, **kw})  # fmt: skip


def write_forecasts(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., ActionEngine]]:
    """make_engine(toml_text) -> an ActionEngine over a config loaded from that TOML, state in tmp_path/state,
    pmaintd_action points in the real sqlite store there. Engines are closed at teardown."""
    made: list[tuple[ActionEngine, object]] = []

    def make(toml_text: str, name: str = "pmaintd.toml") -> ActionEngine:
        path = tmp_path / name
        path.write_text(toml_text)
        cfg = config.load(path)
        store = open_store(cfg.store, tmp_path / "state")
        engine = ActionEngine(cfg, tmp_path / "state", store)
        made.append((engine, store))
        return engine

    yield make
    for engine, store in made:
        engine.close()
        store.close()  # type: ignore[attr-defined]
