"""Build SNMP collectors from config dicts, exactly as the daemon does from TOML."""

from __future__ import annotations

import asyncio
from typing import Any

from pmaintd.collect.snmp import PollResult, SnmpCollector
from pmaintd.config import validate


def collector(targets: list[dict[str, Any]], **defaults: Any) -> SnmpCollector:
    return SnmpCollector(validate({"snmp": {**defaults, "targets": targets}}).snmp)


def poll_twice(coll: SnmpCollector) -> tuple[PollResult, PollResult]:
    """Two polls of the collector's first target in one event loop, so the second may use what the first
    learned (request sizing); the collector is closed afterwards."""
    target = coll.targets()[0]

    async def run() -> tuple[PollResult, PollResult]:
        try:
            return await coll.aprobe(target), await coll.aprobe(target)
        finally:
            await coll.aclose()

    return asyncio.run(run())
