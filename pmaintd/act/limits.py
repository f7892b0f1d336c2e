"""Blast-radius limits, checked at the moment an action would start (auto) or is approved.

A wrong action costs more than a missed one, so every limit is a reason NOT to act now; the caller records
the reason and a later evaluation tries again once the limit has room. Checked inside the same sqlite
transaction that claims the action, so two processes cannot both take the last slot.
"""

from __future__ import annotations

import math

from pmaintd.act.state import ActionDB
from pmaintd.config import LimitsConfig, format_duration

IN_FLIGHT = ("approved", "auto", "running", "unknown")
"""Claimed and not finished: what max_concurrent counts."""


_IN_FLIGHT_SQL = "state IN ({})".format(", ".join(f"'{s}'" for s in IN_FLIGHT))

IN_EFFECT_WHERE = f"({_IN_FLIGHT_SQL} OR (state = 'succeeded' AND window_end > ?))"
"""SQL for rows whose effect is still on the fleet: in flight, or succeeded and still inside its forecast
window (the one `?` is now)."""


def blocking_limit(db: ActionDB, limits: LimitsConfig, kind: str, entity: str, fleet: int, now: float) -> str | None:
    """The first limit acting on `entity` now would break, phrased for an operator; None when it may go ahead."""
    in_flight = db.count(_IN_FLIGHT_SQL)
    if in_flight >= limits.max_concurrent:
        return f"limit max_concurrent = {limits.max_concurrent} reached ({in_flight} in flight)"
    last_hour = db.count("claimed >= ?", (now - 3600,))
    if last_hour >= limits.max_per_hour:
        return f"limit max_per_hour = {limits.max_per_hour} reached ({last_hour} started in the last hour)"
    last = db.last_claimed(entity)
    if last is not None and now - last < limits.cooldown:
        ago = format_duration(round(now - last))
        return f"cooldown: {entity!r} was acted on {ago} ago (cooldown = {format_duration(limits.cooldown)})"
    allowed = math.floor(limits.max_fleet_fraction * fleet + 1e-9)
    busy = db.count(f"kind = ? AND entity != ? AND {IN_EFFECT_WHERE}", (kind, entity, now), "DISTINCT entity")
    if busy + 1 > allowed:
        return (
            f"limit max_fleet_fraction = {limits.max_fleet_fraction:g} of a fleet of {fleet} {kind} entities "
            f"allows {allowed} at once ({busy} already in effect)"
        )
    return None
