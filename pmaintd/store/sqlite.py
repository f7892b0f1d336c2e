"""The embedded default store: one sqlite file in WAL mode, no server.

The daemon writes while `status`, `forecast` and other commands read (WAL allows concurrent readers; each
query reads one consistent snapshot). A point is one row keyed (series, time) in a WITHOUT ROWID table,
its fields a JSON object, and no other index (retention deletes primary-key ranges). One row per point,
not per field, because a collector's batch touches every series at once: with a row per field each batch
dirtied one page per (series, field), and inserts ran ~2.5x slower (bench/store.py). A rewrite of the same
(series, time) merges fields, as InfluxDB does. Field types are recorded per (measurement, field), as
InfluxDB does, so a bool or string reads back as what was written and a type change is refused. The WAL is
truncated by `maintain()` because a reader that is always open otherwise lets it grow without bound.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from pmaintd.store import RECENT_WINDOW_NS, MeasurementStats, StoreError
from pmaintd.telemetry import Point

SCHEMA_VERSION = 3

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
CREATE TABLE IF NOT EXISTS points (
    series INTEGER NOT NULL,
    time INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (series, time)
) WITHOUT ROWID;
"""

# Versions 1 and 2 kept one row per (series, field, time) in `samples`, bools as 0/1.
_FROM_SAMPLES = """
INSERT OR REPLACE INTO points (series, time, fields)
SELECT x.series, x.time, json_group_object(
    x.field, CASE WHEN t.type = 'bool' THEN json(CASE WHEN x.value THEN 'true' ELSE 'false' END) ELSE x.value END)
FROM samples x JOIN series s ON s.id = x.series
LEFT JOIN field_types t ON t.measurement = s.measurement AND t.field = x.field
GROUP BY x.series, x.time;
DROP TABLE samples;
"""

_INSERT = (
    "INSERT INTO points (series, time, fields) VALUES (?, ?, ?) "
    "ON CONFLICT (series, time) DO UPDATE SET fields = json_patch(fields, excluded.fields)"
)
_STATS = """
SELECT measurement, SUM(recent), MAX(newest) FROM (
    SELECT s.measurement,
           (SELECT COUNT(*) FROM points p WHERE p.series = s.id AND p.time >= ?) AS recent,
           (SELECT p.time FROM points p WHERE p.series = s.id ORDER BY p.time DESC LIMIT 1) AS newest
    FROM series s
) GROUP BY measurement ORDER BY measurement
"""
_TYPE_OF = {float: "float", int: "int", bool: "bool", str: "str"}
_POLARS_TYPES = {"bool": pl.Boolean, "int": pl.Int64, "float": pl.Float64, "str": pl.Utf8}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_json_str = json.encoder.encode_basestring_ascii  # the C string escaper json.dumps uses


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
            self._db.execute("PRAGMA cache_size=-32768")  # 32 MB: a batch's pages stay cached between writes
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open sqlite store {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}
        self._series_fast: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        """Series ids by tags in the order the collector built them: no sort, no JSON on a hit."""
        self._json_keys: dict[str, str] = {}
        self._types: dict[tuple[str, str], str] = {
            (m, f): t for m, f, t in self._db.execute("SELECT measurement, field, type FROM field_types")
        }

    def _migrate(self) -> None:
        """Refuse a file from a newer pmaintd before touching it; upgrade an older one in place."""
        version = None
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this pmaintd understands ({SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            if version in (1, 2):
                for stmt in _FROM_SAMPLES.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def _series_id(self, cur: sqlite3.Cursor, measurement: str, tags: Mapping[str, str]) -> int:
        fast = (measurement, tuple(tags.items()))
        key = (measurement, json.dumps(dict(sorted(tags.items())), separators=(",", ":")))
        sid = self._series.get(key)
        if sid is None:
            cur.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", key)
            sid = cur.execute("SELECT id FROM series WHERE measurement = ? AND tags = ?", key).fetchone()[0]
            self._series[key] = sid
        self._series_fast[fast] = sid
        return sid

    def write(self, points: Sequence[Point]) -> None:
        """Insert a batch in one transaction; a rewrite of the same (series, time) merges its fields.

        The loop is inlined (series lookup, type check, JSON built by hand with cached keys, as json.dumps
        per point cost a third of the write): it runs once per field of every point.
        """
        if not points:
            return
        with self._lock:
            cur = self._db.cursor()
            new_types: list[tuple[str, str, str]] = []
            try:
                cur.execute("BEGIN IMMEDIATE")
                rows = []
                types, fast, keys = self._types, self._series_fast, self._json_keys
                for p in points:
                    m = p.measurement
                    sid = fast.get((m, tuple(p.tags.items()))) or self._series_id(cur, m, p.tags)
                    parts = []
                    for f, v in p.fields.items():
                        tv = type(v)
                        if tv is float:
                            tname, text = "float", repr(v)
                        elif tv is int:
                            if _INT64_MIN <= v <= _INT64_MAX:  # type: ignore[operator]
                                tname, text = "int", str(v)
                            else:  # Counter64 beyond int64: keep the magnitude, as InfluxDB 1.x does
                                tname, text = "float", repr(float(v))  # type: ignore[arg-type]
                        elif tv is bool:
                            tname, text = "bool", ("true" if v else "false")
                        else:
                            tname, text = "str", _json_str(v if v.isascii() else _utf8(v))
                        known = types.get((m, f)) or self._learn_type(cur, m, f, tname, new_types)
                        if known != tname and not (known == "float" and tname == "int"):
                            raise StoreError(f"field type conflict: {m}.{f} is {known}, got {tname} ({v!r})")
                        parts.append((keys.get(f) or self._json_key(f)) + text)
                    rows.append((sid, p.time, "{" + ",".join(parts) + "}"))
                cur.executemany("INSERT OR IGNORE INTO field_types VALUES (?, ?, ?)", new_types)
                cur.executemany(_INSERT, rows)
                cur.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                for m, f, _t in new_types:
                    self._types.pop((m, f), None)
                self._series.clear()
                self._series_fast.clear()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"sqlite write to {self.path} failed: {exc}") from None
                raise

    def _json_key(self, name: str) -> str:
        k = self._json_keys[name] = _json_str(name) + ":"
        return k

    def _learn_type(
        self, cur: sqlite3.Cursor, m: str, f: str, tname: str, new_types: list[tuple[str, str, str]]
    ) -> str:
        """A field's type: as recorded in the file (another process may have added it), else this one."""
        row = cur.execute("SELECT type FROM field_types WHERE measurement = ? AND field = ?", (m, f)).fetchone()
        known = row[0] if row else tname
        if row is None:
            new_types.append((m, f, tname))
        self._types[(m, f)] = known
        return known

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
        ids = sorted(series)
        rows: list[tuple[int, int, str]] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(
                f"SELECT series, time, fields FROM points WHERE series IN ({marks}) AND time >= ? AND time < ? "
                "ORDER BY series, time",
                (*chunk, lo, hi),
            ).fetchall()
        return _widen(rows, series, types)

    def stats(self) -> list[MeasurementStats]:
        """Per series, a primary-key seek to its newest point and a range count over the recent window only:
        O(series x log points + recent points), where a COUNT/MAX over the joined table read every row."""
        since = time.time_ns() - RECENT_WINDOW_NS
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = self._db.execute(_STATS, (since,)).fetchall()
            finally:
                self._db.execute("COMMIT")
        return [MeasurementStats(m, n, newest) for m, n, newest in rows if newest is not None]

    def maintain(self) -> None:
        """Drop points older than the retention and truncate the WAL.

        Deletes one primary-key range per series instead of scanning by time: no time index to maintain
        on every insert, and each range is found directly.
        """
        cutoff = time.time_ns() - int(self.retention_s * 1e9)
        with self._lock:
            ids = self._db.execute("SELECT id FROM series").fetchall()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "DELETE FROM points WHERE series = ? AND time < ?", [(sid, cutoff) for (sid,) in ids]
                )
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _utf8(text: str) -> str:
    """A lone surrogate (undecodable device bytes) becomes `?`, as it does on the way to InfluxDB."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _widen(
    rows: list[tuple[int, int, str]], series: Mapping[int, Mapping[str, str]], types: Mapping[str, str]
) -> pl.DataFrame:
    """One row per (series, time): time, the series' tags, and the JSON fields spread into typed columns.

    The JSON is decoded by polars (in Rust, ~4x faster than json.loads per row); a field no row has is
    left out, and a field named like a tag (or `time`) gets `_1` appended, as InfluxQL does.
    """
    if not rows:
        return pl.DataFrame(schema={"time": pl.Datetime("us", "UTC")})
    sids = pl.Series("series", [r[0] for r in rows], dtype=pl.Int64)
    frame = pl.DataFrame({"time": [r[1] // 1000 for r in rows]}).with_columns(
        pl.col("time").cast(pl.Datetime("us", "UTC"))
    )
    present = dict.fromkeys(r[0] for r in rows)
    for k in sorted({k for sid in present for k in series[sid]}):
        mapping = {sid: series[sid].get(k) for sid in present}
        frame = frame.with_columns(sids.replace_strict(mapping, return_dtype=pl.Utf8).alias(k))
    struct = pl.Struct({f: _POLARS_TYPES[t] for f, t in sorted(types.items())})
    decoded = pl.Series("fields", [r[2] for r in rows], dtype=pl.Utf8).str.json_decode(struct).struct.unnest()
    taken = set(frame.columns)
    for f in decoded.columns:
        col = decoded[f]
        if col.null_count() < len(col):
            frame = frame.with_columns(col.alias(f if f not in taken else f"{f}_1"))
    return frame
