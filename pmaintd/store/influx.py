"""The InfluxDB store: writes line protocol (1.x `/write`, or influxdb-client for 2.x/3.x), reads InfluxQL.

Writes are split into `batch_size` requests, gzip'd, with microsecond precision (`precision=u` for 1.x,
which reads an unknown `us` as nanoseconds and still answers 204). A request that fails with a connection
error, a timeout or a 5xx is retried a few times with backoff, then goes to the on-disk spool instead of
raising, and the server is left alone for a growing pause (1 s doubling to 60 s) during which writes go
straight to the spool. Spooled requests are replayed oldest first, before any new write, as soon as the
server answers again, also by a later process. A 4xx other than auth/404 means bad data: it is logged
once per distinct server message and counted in `points_rejected`, never retried.

Reads use InfluxQL on `/query`, which 1.x, 2.x (DBRP mapping) and 3.x all serve, and return the same
frame shape as the sqlite store. Names and tag filters are quoted, and compared with what InfluxDB holds
(`lineproto.stored_name`), so a filter on an ifAlias with a newline still finds its series.

Credentials come from `password_file` / `token_file` (or a v1 URL's user:password@); they travel only in
the Authorization header and never appear in `location`, logs or errors.

Counters for the daemon's /metrics: `points_written`, `points_replayed`, `points_rejected`,
`points_spooled`, `points_dropped`, and `spool_pending_points()`; `counters()` returns them all.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import polars as pl
import urllib3

from pmaintd.config import StoreConfig, read_secret
from pmaintd.store import RECENT_WINDOW_NS, MeasurementStats, StoreError
from pmaintd.store.lineproto import LineProtocolError, Serializer, stored_name
from pmaintd.store.spool import Spool, SpoolRecord
from pmaintd.telemetry import Point

log = logging.getLogger(__name__)

_ATTEMPTS = 3
_FIRST_BACKOFF = 0.2
_PAUSE_MIN, _PAUSE_MAX = 1.0, 60.0
_MIN_RETENTION = 3600.0  # InfluxDB refuses retention policies shorter than one hour
_FIELD_TYPES = {"float": pl.Float64, "integer": pl.Int64, "string": pl.Utf8, "boolean": pl.Boolean,
                "unsigned": pl.UInt64}


class _Unreachable(StoreError):
    """No HTTP answer at all (connection refused, reset, timeout)."""


class _Outcome(Enum):
    OK = "ok"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"


def redact_url(url: str) -> str:
    """The URL without any user:password@ part, for `status` and logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _gunzip(body: bytes) -> bytes:
    return zlib.decompress(body, wbits=31)


class InfluxStore:
    """Store protocol over InfluxDB 1.x, 2.x or 3.x, with a durable spool for outages."""

    kind = "influxdb"

    def __init__(self, cfg: StoreConfig, state_dir: Path) -> None:
        assert cfg.url is not None  # StoreConfig guarantees it for kind = "influxdb"
        self.cfg = cfg
        self.location = redact_url(cfg.url)
        self._base = self.location
        self._ser = Serializer()
        self._lock = threading.RLock()
        self._http = urllib3.PoolManager(
            num_pools=2, maxsize=2, retries=False, timeout=urllib3.Timeout(total=cfg.timeout)
        )
        self._auth: dict[str, str] = {}
        if cfg.api == "v1":
            parts = urllib.parse.urlsplit(cfg.url)
            user = cfg.username or (urllib.parse.unquote(parts.username) if parts.username else None)
            password = read_secret(cfg.password_file) or (
                urllib.parse.unquote(parts.password) if parts.password else None
            )
            if user:
                cred = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
                self._auth = {"Authorization": f"Basic {cred}"}
        else:
            token = read_secret(cfg.token_file)
            if token:
                self._auth = {"Authorization": f"Token {token}"}
        self._client: Any = None
        self._write_api: Any = None
        self._db_ready = cfg.api != "v1"
        self._wire_gzip = cfg.gzip and cfg.api == "v1"
        """v1 bodies are gzip'd here; influxdb-client (v2/v3) compresses its own when `gzip` is on."""
        self._pause_until = 0.0
        self._pause = _PAUSE_MIN
        self._down_reason: str | None = None
        self._seen_rejections: set[str] = set()
        self.points_written = 0
        self.points_replayed = 0
        self.points_rejected = 0
        self.last_error: str | None = None
        """The most recent server or connection problem, phrased for an operator (no secrets)."""
        self._spool_path = Path(state_dir) / "influx-spool.sqlite"
        self._spool_file: Spool | None = None
        self._spool_open_lock = threading.Lock()

    @property
    def _spool(self) -> Spool:
        """Opened on first use, so read-only commands (`status`) need no write access to the state dir."""
        with self._spool_open_lock:
            if self._spool_file is None:
                self._spool_file = Spool(self._spool_path, self.cfg.spool_max_bytes)
            return self._spool_file

    # ------------------------------------------------------------------ counters

    @property
    def points_spooled(self) -> int:
        return self._spool.spooled

    @property
    def points_dropped(self) -> int:
        return self._spool.dropped

    def spool_pending_points(self) -> int:
        """Points waiting in the spool now (also those a previous process left)."""
        return self._spool.pending_points()

    def counters(self) -> dict[str, int]:
        """Every counter by name, for /metrics and `status`."""
        return {
            "points_written": self.points_written,
            "points_replayed": self.points_replayed,
            "points_rejected": self.points_rejected,
            "points_spooled": self.points_spooled,
            "points_dropped": self.points_dropped,
            "spool_pending_points": self.spool_pending_points(),
            "spool_pending_bytes": self._spool.pending_bytes(),
        }

    # ------------------------------------------------------------------ writing

    def write(self, points: Sequence[Point]) -> None:
        """Send points in batches; what cannot reach the server is spooled (never raises for an outage).

        Raises StoreError, before anything is sent, only for points no InfluxDB could store (an empty
        tag key, a measurement starting with '#'), and when the spool itself cannot be written.
        """
        if not points:
            return
        size = self.cfg.batch_size
        try:
            batches = [
                (self._ser.encode(points[i : i + size]), len(points[i : i + size]))
                for i in range(0, len(points), size)
            ]
        except LineProtocolError as exc:
            raise StoreError(f"cannot write to InfluxDB at {self.location}: {exc}") from None
        with self._lock:
            self._replay(budget=self.cfg.timeout)
            for n, (body, count) in enumerate(batches):
                if not self._spool.is_empty() or time.monotonic() < self._pause_until:
                    self._spool_rest(batches[n:])
                    return
                payload = gzip.compress(body, 1) if self._wire_gzip else body
                outcome, message = self._send(payload, self._wire_gzip)
                if outcome is _Outcome.OK:
                    self.points_written += count
                elif outcome is _Outcome.REJECTED:
                    self._rejected(count, message)
                else:
                    self._unavailable(message)
                    self._spool_rest(batches[n:], first=payload if self._wire_gzip else None)
                    return

    def spool(self, points: Sequence[Point]) -> None:
        """Put points straight into the spool without trying the server, for the next write or process to
        replay. The daemon uses it at stop when a hung server holds the writer: what waits behind that request
        is kept instead of lost. Takes only the spool's own lock, so it works while a write is stuck."""
        size = self.cfg.batch_size
        self._spool_rest([(self._ser.encode(points[i : i + size]), len(points[i : i + size]))
                          for i in range(0, len(points), size)])

    def _spool_rest(self, batches: list[tuple[bytes, int]], first: bytes | None = None) -> None:
        for i, (body, count) in enumerate(batches):
            self._spool.append(first if i == 0 and first is not None else gzip.compress(body, 1), count)

    def _replay(self, budget: float, force: bool = False) -> None:
        """Send spooled records oldest first while the server accepts them, for at most about `budget`
        seconds (so a large backlog never holds a write for long; the rest goes on the next call).
        A no-op while paused after a failure, unless forced."""
        if (not force and time.monotonic() < self._pause_until) or self._spool.is_empty():
            return
        stop_at = time.monotonic() + budget
        with self._spool.replaying() as mine:
            if not mine:
                return
            while time.monotonic() < stop_at and (rec := self._spool.oldest()) is not None:
                outcome, message = self._send_record(rec)
                if outcome is _Outcome.UNAVAILABLE:
                    self._unavailable(message)
                    return
                self._spool.remove(rec)
                if outcome is _Outcome.OK:
                    self.points_replayed += rec.points
                else:
                    self._rejected(rec.points, message)
        self._spool.compact()

    def _send_record(self, rec: SpoolRecord) -> tuple[_Outcome, str]:
        if self._wire_gzip:
            return self._send(rec.body, True)
        return self._send(_gunzip(rec.body), False)

    def _send(self, payload: bytes, gzipped: bool) -> tuple[_Outcome, str]:
        """One write request with retries for connection errors, timeouts and 5xx."""
        delay = _FIRST_BACKOFF
        outcome, message = _Outcome.UNAVAILABLE, ""
        give_up = time.monotonic() + self.cfg.timeout  # retries never hold a write longer than ~2 timeouts
        for attempt in range(_ATTEMPTS):
            if attempt:
                if time.monotonic() + delay > give_up:
                    break
                time.sleep(delay)
                delay *= 2
            if not self._db_ready:
                self._ensure_database()
            status, message = self._post_write(payload, gzipped)
            if 200 <= status < 300:
                if self._down_reason is not None:
                    log.info("InfluxDB at %s answers again; replaying the spool", self.location)
                self._down_reason = None
                self._pause = _PAUSE_MIN
                self._pause_until = 0.0
                return _Outcome.OK, ""
            if status == 404:  # database missing (dropped, or creation failed earlier): create, then retry
                self._db_ready = self.cfg.api != "v1"
            if status in (0, 401, 403, 404, 408, 429) or status >= 500:
                outcome = _Outcome.UNAVAILABLE
                if status in (401, 403):
                    break  # credentials will not fix themselves within this call
                continue
            return _Outcome.REJECTED, message
        return outcome, message

    def _post_write(self, payload: bytes, gzipped: bool) -> tuple[int, str]:
        """(HTTP status, server message); status 0 for a connection error or timeout."""
        if self.cfg.api != "v1":
            return self._client_write(payload)
        headers = {"Content-Type": "text/plain; charset=utf-8", **self._auth}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        url = f"{self._base}/write?" + urllib.parse.urlencode({"db": self.cfg.database, "precision": "u"})
        try:
            r = self._http.request("POST", url, body=payload, headers=headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        return r.status, _server_message(r.data)

    def _client_write(self, payload: bytes) -> tuple[int, str]:
        """2.x/3.x: influxdb-client's synchronous write API (it gzips itself when configured)."""
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        if self._client is None:
            from influxdb_client import InfluxDBClient

            token = self._auth.get("Authorization", "Token ").removeprefix("Token ")
            self._client = InfluxDBClient(
                url=self._base, token=token, org=self.cfg.org, timeout=int(self.cfg.timeout * 1000),
                enable_gzip=self.cfg.gzip,
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        try:
            self._write_api.write(
                bucket=self.cfg.bucket or self.cfg.database, org=self.cfg.org, record=payload.rstrip(b"\n"),
                write_precision=WritePrecision.US,
            )
        except ApiException as exc:
            return int(exc.status or 0), _server_message(exc.body)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        return 204, ""

    def _ensure_database(self) -> None:
        """v1: create the database with the configured retention when it does not exist yet."""
        try:
            names = {row[0] for s in self._influxql_series("SHOW DATABASES") for row in s.get("values", [])}
            if self.cfg.database not in names:
                seconds = int(max(self.cfg.retention, _MIN_RETENTION))
                self._influxql_series(
                    f"CREATE DATABASE {quote_ident(self.cfg.database)} WITH DURATION {seconds}s"
                )
                log.info("created InfluxDB database %s at %s (retention %ds)", self.cfg.database, self.location,
                         seconds)
            self._db_ready = True
        except _Unreachable:
            pass  # the write that follows finds out the same and spools; try again next time
        except StoreError as exc:
            # Not fatal: the user may lack admin rights while the database exists. The write will tell.
            self._db_ready = True
            log.info("could not check or create database %s: %s", self.cfg.database, exc)

    def _unavailable(self, message: str) -> None:
        self.last_error = f"InfluxDB at {self.location} unavailable: {message}"
        if self._down_reason is None:
            log.warning("%s; spooling writes until it answers", self.last_error)
        self._down_reason = message
        self._pause_until = time.monotonic() + self._pause
        self._pause = min(self._pause * 2, _PAUSE_MAX)

    def _rejected(self, count: int, message: str) -> None:
        self.points_rejected += count
        self.last_error = f"InfluxDB at {self.location} rejected {count} points: {message}"
        if message not in self._seen_rejections:
            if len(self._seen_rejections) < 1000:
                self._seen_rejections.add(message)
            log.error("%s (each distinct message is logged once)", self.last_error)

    # ------------------------------------------------------------------ reading

    def _influxql(self, q: str) -> Iterator[dict[str, Any]]:
        """Run InfluxQL on /query (chunked JSON); yields each statement result, raises StoreError on error."""
        params = {"q": q, "db": self.cfg.database, "epoch": "ns", "chunked": "true", "chunk_size": "20000"}
        try:
            r = self._http.request(
                "POST", f"{self._base}/query", fields=params, encode_multipart=False,
                headers=dict(self._auth), preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Unreachable(f"InfluxDB at {self.location} unreachable: {type(exc).__name__}: {exc}") from None
        if r.status != 200:
            raise StoreError(f"InfluxDB at {self.location} answered {r.status}: {_server_message(r.data)}")
        decoder = json.JSONDecoder()
        text = r.data.decode("utf-8", "replace")
        pos = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                return
            obj, pos = decoder.raw_decode(text, pos)
            if obj.get("error"):
                raise StoreError(f"InfluxDB at {self.location}: {obj['error']}")
            for res in obj.get("results", []):
                if res.get("error"):
                    raise StoreError(f"InfluxDB at {self.location}: {res['error']} (query: {q[:200]})")
                yield res

    def _influxql_series(self, q: str) -> list[dict[str, Any]]:
        """All series of one statement, with chunks of the same series merged."""
        return self._statements([q])[0]

    def _statements(self, stmts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Run InfluxQL statements, many per request (3.x takes one); per statement its series, with chunks of
        the same series merged."""
        per_request = 1 if self.cfg.api == "v3" else 200
        out: list[list[dict[str, Any]]] = []
        for i in range(0, len(stmts), per_request):
            batch = stmts[i : i + per_request]
            merged: list[dict[tuple[str, str], dict[str, Any]]] = [{} for _ in batch]
            for res in self._influxql("; ".join(batch)):
                into = merged[int(res.get("statement_id", 0))]
                for s in res.get("series", []):
                    key = (s.get("name", ""), json.dumps(s.get("tags") or {}, sort_keys=True))
                    have = into.get(key)
                    if have is None:
                        into[key] = {**s, "values": list(s.get("values", []))}
                    else:
                        have["values"].extend(s.get("values", []))
            out += [list(m.values()) for m in merged]
        return out

    def query(
        self,
        measurement: str,
        start: int | None = None,
        stop: int | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
    ) -> pl.DataFrame:
        """Same shape as SqliteStore.query: time (µs, UTC), one Utf8 column per tag, typed field columns."""
        m = quote_ident(stored_name(measurement))
        where = []
        if start is not None:  # stored times are whole microseconds: a point at t ns is stored at t//1000 us
            where.append(f"time >= {int(start) // 1000 * 1000}")
        if stop is not None:
            where.append(f"time < {int(stop)}")
        for k, want in (tags or {}).items():
            values = [want] if isinstance(want, str) else list(want)
            if not values:
                return pl.DataFrame(schema={"time": pl.Datetime("us", "UTC")})
            ident = quote_ident(stored_name(k))
            where.append("(" + " OR ".join(f"{ident} = {quote_string(stored_name(v))}" for v in values) + ")")
        q = f"SELECT * FROM {m}" + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY *"
        series = self._influxql_series(q)
        if not series:
            return pl.DataFrame(schema={"time": pl.Datetime("us", "UTC")})
        types: dict[str, pl.DataType] = {}
        for s in self._influxql_series(f"SHOW FIELD KEYS FROM {m}"):
            for key, ftype in s.get("values", []):
                types.setdefault(key, _FIELD_TYPES.get(ftype, pl.Utf8)())
        tag_keys = sorted({k for s in series for k, v in (s.get("tags") or {}).items() if v != ""})
        fields = sorted({c for s in series for c in s["columns"][1:]})
        cols: dict[str, list[Any]] = {c: [] for c in ["time", *tag_keys, *fields]}
        for s in series:
            stags = s.get("tags") or {}
            idx = {c: i for i, c in enumerate(s["columns"])}
            for row in sorted(s["values"], key=lambda r: r[0]):
                cols["time"].append(row[0] // 1000)
                for k in tag_keys:
                    cols[k].append(stags.get(k) or None)
                for f in fields:
                    cols[f].append(row[idx[f]] if f in idx else None)
        schema: dict[str, Any] = {"time": pl.Int64, **{k: pl.Utf8 for k in tag_keys}}
        schema |= {f: types.get(f, pl.Float64()) for f in fields}
        frame = pl.DataFrame(cols, schema=schema, strict=False)
        return frame.with_columns(pl.col("time").cast(pl.Datetime("us", "UTC")))

    def stats(self) -> list[MeasurementStats]:
        """Per measurement: points in the recent window (the largest field count per series, summed) and the
        newest point's time, from time-bounded queries only.

        A COUNT or `ORDER BY time DESC LIMIT 1` without a time bound makes InfluxDB open every shard the
        measurement has ever had (years of Telegraf data: a scan of every point, minutes). Here the count
        covers the window, and the newest point is looked for in the window first, then, for measurements
        quiet there, backwards in windows that double (2, 4, 8... days) until one holds a point: each query
        opens only its own range's shards, and one silent for a year is found in 8 rounds. All measurements'
        statements of a round go in one request.
        """
        since = (time.time_ns() - RECENT_WINDOW_NS) // 1000 * 1000  # stored times are whole microseconds
        names = [n for s in self._influxql_series("SHOW MEASUREMENTS") for (n,) in s.get("values", [])]
        counts: dict[str, int] = {}
        newest: dict[str, int] = {}
        stmts = []
        for name in names:
            m = quote_ident(name)
            stmts += [f"SELECT COUNT(*) FROM {m} WHERE time >= {since} GROUP BY *",
                      f"SELECT * FROM {m} WHERE time >= {since} ORDER BY time DESC LIMIT 1"]
        results = self._statements(stmts)
        for k, name in enumerate(names):
            counts[name] = sum(
                max((v for v in row[1:] if isinstance(v, int)), default=0)
                for cs in results[2 * k] for row in cs.get("values", [])
            )
            _newest_into(newest, name, results[2 * k + 1])
        quiet = [n for n in names if n not in newest]
        hi, span = since, RECENT_WINDOW_NS
        while quiet:
            span *= 2
            lo = hi - span
            cond = f"time >= {lo} AND time < {hi}" if lo > 0 else f"time < {hi}"  # before 1970: the rest
            results = self._statements(
                [f"SELECT * FROM {quote_ident(n)} WHERE {cond} ORDER BY time DESC LIMIT 1" for n in quiet]
            )
            for name, res in zip(quiet, results, strict=True):
                _newest_into(newest, name, res)
            quiet = [n for n in quiet if n not in newest] if lo > 0 else []
            hi = lo
        return sorted(
            (MeasurementStats(n, counts[n], newest[n]) for n in names if n in newest), key=lambda x: x.measurement
        )

    def maintain(self) -> None:
        """Replay the spool now, even within the pause after a failure (retention is the server's job)."""
        with self._lock:
            self._replay(budget=max(60.0, self.cfg.timeout), force=True)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._http.clear()
            if self._spool_file is not None:
                self._spool_file.close()


def _server_message(data: bytes | str | None) -> str:
    """The `error` of an InfluxDB JSON error body, else the body's text (bounded)."""
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            text = str(obj.get("error") or obj.get("message") or text)
    except ValueError:
        pass
    return text.strip()[:500]


def _newest_into(newest: dict[str, int], name: str, series: list[dict[str, Any]]) -> None:
    """Record the latest time in a `... ORDER BY time DESC LIMIT 1` result, if it has a row."""
    for s in series:
        for row in s.get("values", []):
            newest[name] = max(newest.get(name, row[0]), row[0])
