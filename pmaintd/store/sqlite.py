"""The embedded default store: one sqlite file in WAL mode, no server.

The daemon writes while `status`, `forecast` and other commands read (WAL allows concurrent readers).
Samples are keyed (series, field, time) in a WITHOUT ROWID table, which inserts ~240k rows/s here and answers
one entity's 90 days in under a millisecond. Field types are recorded per (measurement, field), as InfluxDB
does, so a bool or string reads back as what was written. The WAL is truncated by `maintain()` because a
reader that is always open otherwise lets it grow without bound.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from pmaintd.store import MeasurementStats, StoreError
from pmaintd.telemetry import FieldValue, Point

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (measurement, tags)
);
CREATE TABLE IF NOT EXISTS field_types (
    measurement TEXT NOT NULL,
    field TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (measurement, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER NOT NULL,
    field TEXT NOT NULL,
    time INTEGER NOT NULL,
    value,
    PRIMARY KEY (series, field, time)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_time ON samples (time);
"""

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str"}
_POLARS_TYPES = {"bool": pl.Boolean, "int": pl.Int64, "float": pl.Float64, "str": pl.Utf8}
_INT64_MAX = 2**63 - 1


def _type_name(v: FieldValue) -> str:
    if type(v) is int and not -_INT64_MAX - 1 <= v <= _INT64_MAX:  # type: ignore[operator]
        return "float"  # stored as a float (see _db_value), so it must read back as one
    return _TYPE_NAMES[type(v)]


def _db_value(v: FieldValue) -> int | float | str:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int) and not -_INT64_MAX - 1 <= v <= _INT64_MAX:  # Counter64 beyond int64: keep magnitude
        return float(v)
    return v


class SqliteStore:
    """Store protocol over one sqlite WAL file."""

    kind = "sqlite"

    def __init__(self, path: Path, retention_s: float = 30 * 86400.0) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.retention_s = retention_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open sqlite store {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}
        self._series_fast: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        """Series ids by tags in the order the collector built them: no sort, no JSON on a hit."""
        self._types: dict[tuple[str, str], str] = {
            (m, f): t for m, f, t in self._db.execute("SELECT measurement, field, type FROM field_types")
        }

    def _migrate(self) -> None:
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {row[0]}, newer than this pmaintd understands ({SCHEMA_VERSION})"
            )

    def _series_id(self, cur: sqlite3.Cursor, measurement: str, tags: Mapping[str, str]) -> int:
        fast = (measurement, tuple(tags.items()))
        sid = self._series_fast.get(fast)
        if sid is not None:
            return sid
        key = (measurement, json.dumps(dict(sorted(tags.items())), separators=(",", ":")))
        sid = self._series.get(key)
        if sid is None:
            cur.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", key)
            sid = cur.execute("SELECT id FROM series WHERE measurement = ? AND tags = ?", key).fetchone()[0]
            self._series[key] = sid
        self._series_fast[fast] = sid
        return sid

    def write(self, points: Sequence[Point]) -> None:
        """Insert a batch in one transaction; a rewrite of the same (series, field, time) replaces it."""
        if not points:
            return
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                rows = []
                new_types = []
                for p in points:
                    sid = self._series_id(cur, p.measurement, p.tags)
                    for f, v in p.fields.items():
                        tkey = (p.measurement, f)
                        tname = _type_name(v)
                        known = self._types.get(tkey)
                        if known is None:
                            self._types[tkey] = tname
                            new_types.append((p.measurement, f, tname))
                        elif known != tname and not (known == "float" and tname == "int"):
                            raise StoreError(
                                f"field type conflict: {p.measurement}.{f} is {known}, got {tname} ({v!r})"
                            )
                        rows.append((sid, f, p.time, _db_value(v)))
                cur.executemany("INSERT OR IGNORE INTO field_types VALUES (?, ?, ?)", new_types)
                cur.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)", rows)
                cur.execute("COMMIT")
            except BaseException as exc:
                cur.execute("ROLLBACK")
                for m, f, _t in new_types:
                    self._types.pop((m, f), None)
                self._series.clear()
                self._series_fast.clear()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"sqlite write to {self.path} failed: {exc}") from None
                raise

    def query(
        self,
        measurement: str,
        start: int | None = None,
        stop: int | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
    ) -> pl.DataFrame:
        """Wide frame: time (µs, UTC), one column per tag, one per field, sorted by series then time.

        Reads in one transaction (a consistent snapshot while the daemon writes), and takes field types
        from the file, not this process's cache: another process may have added fields since we opened.
        """
        with self._lock:
            self._db.execute("BEGIN")
            try:
                return self._query(measurement, start, stop, tags)
            finally:
                self._db.execute("COMMIT")

    def _query(
        self,
        measurement: str,
        start: int | None,
        stop: int | None,
        tags: Mapping[str, str | Sequence[str]] | None,
    ) -> pl.DataFrame:
        series = {
            sid: json.loads(t)
            for sid, t in self._db.execute("SELECT id, tags FROM series WHERE measurement = ?", (measurement,))
        }
        if tags:
            wanted = {k: ({v} if isinstance(v, str) else set(v)) for k, v in tags.items()}
            series = {sid: t for sid, t in series.items() if all(t.get(k) in vs for k, vs in wanted.items())}
        types = dict(self._db.execute("SELECT field, type FROM field_types WHERE measurement = ?", (measurement,)))
        if not series:
            return pl.DataFrame(schema={"time": pl.Datetime("us", "UTC")})
        lo = start if start is not None else -(2**63)
        hi = stop if stop is not None else 2**63 - 1
        ids = list(series)
        rows: list[tuple[int, str, int, object]] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(
                f"SELECT series, field, time, value FROM samples WHERE series IN ({marks}) "
                "AND time >= ? AND time < ?",
                (*chunk, lo, hi),
            ).fetchall()
        return _widen(rows, series, types)

    def stats(self) -> list[MeasurementStats]:
        out = []
        with self._lock:
            rows = self._db.execute(
                "SELECT s.measurement, COUNT(DISTINCT x.series || ':' || x.time), MAX(x.time) "
                "FROM samples x JOIN series s ON s.id = x.series GROUP BY s.measurement ORDER BY s.measurement"
            ).fetchall()
        for m, n, newest in rows:
            out.append(MeasurementStats(m, n, newest))
        return out

    def maintain(self) -> None:
        """Drop samples older than the retention and truncate the WAL."""
        cutoff = time.time_ns() - int(self.retention_s * 1e9)
        with self._lock:
            self._db.execute("DELETE FROM samples WHERE time < ?", (cutoff,))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _widen(
    rows: list[tuple[int, str, int, object]], series: Mapping[int, Mapping[str, str]], types: Mapping[str, str]
) -> pl.DataFrame:
    """Pivot (series, field, time, value) rows into one row per (series, time)."""
    tag_keys = sorted({k for t in series.values() for k in t})
    by_key: dict[tuple[int, int], dict[str, object]] = {}
    for sid, f, t, v in rows:
        rec = by_key.get((sid, t))
        if rec is None:
            rec = by_key[(sid, t)] = {"time": t // 1000, **series[sid]}
        rec[f] = v
    fields = sorted({f for _s, f, _t, _v in rows})
    schema: dict[str, pl.DataType] = {"time": pl.Int64()}
    schema |= {k: pl.Utf8() for k in tag_keys}
    schema |= {f: _POLARS_TYPES[types.get(f, "float")]() for f in fields}
    ordered = [by_key[k] for k in sorted(by_key)]
    frame = pl.DataFrame(
        {col: [r.get(col) for r in ordered] for col in schema},
        schema={c: (pl.Int64 if t == pl.Boolean else t) for c, t in schema.items()},
        strict=False,
    )
    casts = [pl.col("time").cast(pl.Datetime("us", "UTC"))]
    casts += [pl.col(f).cast(pl.Boolean) for f in fields if types.get(f) == "bool"]
    return frame.with_columns(casts)
