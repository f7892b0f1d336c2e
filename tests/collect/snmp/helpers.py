"""Build SNMP collectors from config dicts, exactly as the daemon does from TOML."""

from __future__ import annotations

from typing import Any

from pmaintd.collect.snmp import SnmpCollector
from pmaintd.config import validate


def collector(targets: list[dict[str, Any]], **defaults: Any) -> SnmpCollector:
    return SnmpCollector(validate({"snmp": {**defaults, "targets": targets}}).snmp)
