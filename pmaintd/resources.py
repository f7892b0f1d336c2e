"""Data pmaintd ships (SNMP profiles, model bundles, Grafana files, systemd units), found through
importlib.resources so an installed package never depends on a source checkout."""

from __future__ import annotations

from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

SHIPPED = ("collectors", "models", "grafana", "systemd")


def shipped(*parts: str) -> Traversable:
    """A shipped file or folder, e.g. shipped("models", "disk"). Raises ValueError for an unknown top folder."""
    if not parts or parts[0] not in SHIPPED:
        raise ValueError(f"shipped data lives under one of {SHIPPED}, not {parts[:1]}")
    node = files("pmaintd") / "share"
    for p in parts:
        node = node / p
    return node


def shipped_path(*parts: str) -> Path:
    """A real filesystem path for shipped data (wheels install as files, so this is the file itself)."""
    with as_file(shipped(*parts)) as p:
        return Path(p)
