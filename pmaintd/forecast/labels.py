"""Labels from incidents, and the incidents file format.

A row scored at time t is positive when a failure of its entity lies in (t, t + H]. Rows at or after the
entity's first failure are dropped: after a failure the entity is replaced or repaired, and its rows say nothing
about the next failure. Live telemetry is right-censored: a row of a healthy entity within H of the time
incidents are known through cannot be labeled yet (tomorrow's failure is already ramping up in it), so
`label_rows(..., known_until=...)` drops it instead of calling it a negative.

Incident files are CSV (header `time,kind,entity[,cause]`) or JSON lines with the same keys; a bad row is
reported with its line number and the whole file is refused, so nothing is half-imported.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from pmaintd.telemetry import parse_time

KINDS = ("disk", "host", "network")


@dataclass(frozen=True)
class Incident:
    """A failure of one entity at a time (ns since the epoch, UTC)."""

    time: int
    kind: str
    entity: str
    cause: str = ""
    """Free text; `forecast.incidents.to_point` turns an incident into its `pmaintd_incident` point."""


class IncidentFileError(ValueError):
    """An incidents file has bad rows; `problems` lists (line number, message) for every one of them."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path, self.problems = path, problems
        lines = "\n  ".join(f"line {n}: {msg}" for n, msg in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{path}: {len(problems)} bad row(s), nothing imported:\n  {lines}{more}")


def _incident(rec: dict[str, object]) -> Incident:
    missing = [k for k in ("time", "kind", "entity") if not str(rec.get(k) or "").strip()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    kind = str(rec["kind"]).strip()
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    raw_t = rec["time"]
    try:
        t = int(raw_t) * 1_000_000_000 if isinstance(raw_t, int) else parse_time(str(raw_t))
    except ValueError:
        raise ValueError(f"time {raw_t!r} is not an ISO 8601 time or epoch seconds") from None
    return Incident(t, kind, str(rec["entity"]).strip(), str(rec.get("cause") or "").strip())


def parse_incidents(path: Path) -> list[Incident]:
    """Read a CSV or JSON-lines incidents file; raise IncidentFileError naming every bad line."""
    text = Path(path).read_text(encoding="utf-8")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    out: list[Incident] = []
    problems: list[tuple[int, str]] = []
    if first.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                out.append(_incident(rec))
            except (ValueError, json.JSONDecodeError) as exc:
                problems.append((n, str(exc)))
    else:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in reader.fieldnames or []]
        absent = [k for k in ("time", "kind", "entity") if k not in header]
        if absent:
            raise IncidentFileError(str(path), [(1, f"header lacks {', '.join(absent)} (got {header})")])
        reader.fieldnames = header
        for rec in reader:
            n = reader.line_num
            if None in rec:
                problems.append((n, "more fields than the header"))
                continue
            try:
                out.append(_incident(rec))
            except ValueError as exc:
                problems.append((n, str(exc)))
    if problems:
        raise IncidentFileError(str(path), problems)
    return out


def incidents_frame(incidents: Iterable[Incident], kind: str) -> pl.DataFrame:
    """entity, time (UTC µs) of the first failure of each entity of `kind`."""
    rows = [(i.entity, i.time // 1000) for i in incidents if i.kind == kind]
    df = pl.DataFrame(rows, schema={"entity": pl.Utf8, "time": pl.Int64}, orient="row")
    return (
        df.with_columns(pl.col("time").cast(pl.Datetime("us", "UTC")))
        .group_by("entity")
        .agg(pl.col("time").min().alias("failure_time"))
    )


def label_rows(
    features: pl.DataFrame,
    failures: pl.DataFrame,
    horizon_hours: float,
    entity: str,
    time: str,
    known_until: datetime | None = None,
) -> pl.DataFrame:
    """Add `label` (1 when the entity fails in (t, t + horizon]) and drop rows at or after the failure.

    `failures` has columns entity, failure_time (from `incidents_frame`). The kept `failure_time` column
    lets evaluation compute lead times. With `known_until` (the time incidents are known through: the end of
    live telemetry), rows of entities with no recorded failure are dropped where t + horizon > known_until:
    their label is not known yet. Counting them as negatives taught the model that the precursors of
    failures still to come are normal, and made the evaluation count those entities as false alarms.
    Closed histories (Backblaze files) pass None: issue 4 defines a healthy drive by its last 7 days.
    """
    horizon = pl.duration(microseconds=int(horizon_hours * 3600 * 1_000_000))
    f = failures.rename({"entity": entity})
    out = features.join(f, on=entity, how="left")
    out = out.filter(pl.col("failure_time").is_null() | (pl.col(time) < pl.col("failure_time")))
    if known_until is not None:
        # A recorded failure settles every earlier row's label; without one, only rows a horizon old are known.
        out = out.filter(pl.col("failure_time").is_not_null() | (pl.col(time) + horizon <= pl.lit(known_until)))
    return out.with_columns(
        (pl.col("failure_time").is_not_null() & (pl.col("failure_time") - pl.col(time) <= horizon))
        .cast(pl.Int8)
        .alias("label")
    )
