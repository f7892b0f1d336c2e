"""The Store protocol and the factory that opens the configured one.

Collectors, forecasting and actions only ever see this protocol, so the embedded sqlite store and an
InfluxDB server are interchangeable. `query` returns a polars DataFrame in InfluxQL's `SELECT *` shape:
one row per (series, time), a `time` column (UTC, microseconds), one column per tag and one per field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import polars as pl

from pmaintd.config import StoreConfig
from pmaintd.telemetry import Point


class StoreError(Exception):
    """A store could not do what was asked; the message says what and where, never a secret."""


RECENT_WINDOW_NS = 24 * 3600 * 10**9
"""`status` counts points over this recent window only (its JSON key and column say `24h`): a count over all
time reads every point of every shard, which on years of Telegraf data takes minutes and loads the server
exactly when an operator asks what is wrong. Whether data arrives, and how much, is what the window tells."""


@dataclass(frozen=True)
class MeasurementStats:
    """What `status` shows per measurement that holds at least one point."""

    measurement: str
    points_24h: int
    """Points stamped within RECENT_WINDOW_NS before the call, or later (a device clock ahead): not a total."""
    newest: int
    """Newest point's time in ns, whatever its age (a measurement that went quiet long ago still shows it)."""


@runtime_checkable
class Store(Protocol):
    kind: str
    location: str
    """Where the data lives (a file path or a URL without credentials), for `status`."""

    def write(self, points: Sequence[Point]) -> None:
        """Persist points. Raises StoreError when they could not be accepted (nothing half-written)."""
        ...

    def query(
        self,
        measurement: str,
        start: int | None = None,
        stop: int | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
    ) -> pl.DataFrame:
        """Points of one measurement with start <= time < stop (ns; None = unbounded), optionally
        restricted to series whose tags equal the given values (a sequence means any of them)."""
        ...

    def stats(self) -> list[MeasurementStats]:
        """Per measurement with any point, sorted by name: points in the recent window and the newest time.
        Must stay fast whatever the volume stored: nothing here may read all points of a measurement."""
        ...

    def maintain(self) -> None:
        """Periodic housekeeping (retention, checkpoints, spool replay); cheap when there is nothing to do."""
        ...

    def close(self) -> None: ...


def open_store(cfg: StoreConfig, state_dir: Path) -> Store:
    """Open the configured store; the sqlite file lives in the state dir unless `store.path` says otherwise."""
    if cfg.kind == "sqlite":
        from pmaintd.store.sqlite import SqliteStore

        return SqliteStore(cfg.path or state_dir / "pmaintd.db", retention_s=cfg.retention)
    from pmaintd.store.influx import InfluxStore

    return InfluxStore(cfg, state_dir)
