"""Line-protocol escaping: hostile strings round-trip and never inject a point.

Checked two ways: against a strict reference parser written here (left-to-right escapes, refusing any
spelling that InfluxDB's Go and Rust parsers would read differently), and against a real influxd 1.x
(write, then read the same tags and fields back with InfluxQL).
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pmaintd.store.influx import quote_ident
from pmaintd.store.lineproto import (
    LineProtocolError,
    Serializer,
    stored_name,
    stored_string,
    to_line,
    to_lines,
)
from pmaintd.telemetry import Point
from tests.services import Influxd

# ---------------------------------------------------------------- reference parser


class Unparseable(ValueError):
    pass


def _scan(line: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    """Read up to an unescaped char in `stops`; `\\x` with x escapable is x. A backslash before another
    backslash or at the end is refused: the Go parser and the Rust parser read those differently."""
    out = []
    while i < len(line):
        c = line[i]
        if c == "\\":
            if i + 1 >= len(line) or line[i + 1] == "\\":
                raise Unparseable(f"ambiguous backslash at {i} in {line!r}")
            if line[i + 1] in escapable:
                out.append(line[i + 1])
                i += 2
                continue
            out.append(c)
            i += 1
            continue
        if c in stops:
            break
        if c == "\n":
            raise Unparseable("raw newline inside a point")
        out.append(c)
        i += 1
    return "".join(out), i


def _field_value(line: str, i: int) -> tuple[object, int]:
    if line[i] == '"':
        out, i = [], i + 1
        while True:
            if i >= len(line):
                raise Unparseable("unterminated string")
            c = line[i]
            if c == "\\" and i + 1 < len(line) and line[i + 1] in '\\"':
                out.append(line[i + 1])
                i += 2
            elif c == '"':
                return "".join(out), i + 1
            elif c == "\n":
                raise Unparseable("raw newline inside a string field")
            else:
                out.append(c)
                i += 1
    j = i
    while j < len(line) and line[j] not in ", ":
        j += 1
    raw = line[i:j]
    if raw in ("true", "false"):
        return raw == "true", j
    if raw.endswith("i"):
        v = int(raw[:-1])
        if not -(2**63) <= v < 2**63:
            raise Unparseable("integer out of int64")
        return v, j
    return float(raw), j


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """measurement, tags, fields, time(us) of one line, or Unparseable."""
    if line.startswith("#"):
        raise Unparseable("comment line")
    m, i = _scan(line, 0, ", ", ", ")
    tags: dict[str, str] = {}
    while i < len(line) and line[i] == ",":
        k, i = _scan(line, i + 1, "=", ",= ")
        if i >= len(line) or line[i] != "=":
            raise Unparseable("tag without =")
        v, i = _scan(line, i + 1, ", =", ",= ")
        if not k or not v or k in tags:
            raise Unparseable("empty or duplicate tag")
        tags[k] = v
    if i >= len(line) or line[i] != " ":
        raise Unparseable("no field set")
    fields: dict[str, object] = {}
    i += 1
    while True:
        k, i = _scan(line, i, "=", ",= ")
        if i >= len(line) or not k or k in fields:
            raise Unparseable("bad field key")
        v, i = _field_value(line, i + 1)
        fields[k] = v
        if i < len(line) and line[i] == ",":
            i += 1
            continue
        break
    if i >= len(line) or line[i] != " ":
        raise Unparseable("no timestamp")
    ts = line[i + 1 :]
    if not ts.lstrip("-").isdigit():
        raise Unparseable(f"bad timestamp {ts!r}")
    return m, tags, fields, int(ts)


def parse_body(body: str) -> list[tuple[str, dict[str, str], dict[str, object], int]]:
    assert body.endswith("\n")
    return [parse_line(x) for x in body[:-1].split("\n")]


def expected(p: Point) -> tuple[str, dict[str, str], dict[str, object], int]:
    """What InfluxDB should hold for p, by the documented rules in lineproto's docstring."""
    fields: dict[str, object] = {}
    for k, v in p.fields.items():
        if isinstance(v, str):
            v = stored_string(v)
        elif isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
            v = float(v)
        fields[stored_name(k)] = v
    tags = {stored_name(k): stored_name(v) for k, v in p.tags.items()}
    return stored_name(p.measurement), tags, fields, p.time // 1000


# ---------------------------------------------------------------- strategies

HOSTILE = [",", "=", " ", '"', "\\", "\n", "\r", "\t", "\x00", "#", "'", "i", "1", "x", "é", "\u2028", "😀"]
text = st.text(st.one_of(st.sampled_from(HOSTILE), st.characters(codec="utf-8")), min_size=1, max_size=12)


def _distinct_names(names: list[str]) -> bool:
    stored = [stored_name(n) for n in names]
    return len(set(stored)) == len(stored) and "time" not in stored


measurement = text.filter(lambda s: not stored_name(s).startswith("#"))
field_value = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
    st.text(max_size=30),
)


@st.composite
def points(draw: st.DrawFn) -> Point:
    tag_keys = draw(st.lists(text, max_size=4, unique=True))
    field_keys = draw(st.lists(text, min_size=1, max_size=4, unique=True))
    if not _distinct_names(tag_keys + field_keys):
        from hypothesis import reject

        reject()
    tags = {k: draw(text) for k in tag_keys}
    fields = {k: draw(field_value) for k in field_keys}
    t = draw(st.integers(min_value=946_684_800_000_000, max_value=4_102_444_800_000_000)) * 1000
    return Point(draw(measurement), tags, fields, t)


# ---------------------------------------------------------------- properties


@given(st.lists(points(), min_size=1, max_size=5))
@settings(max_examples=400, deadline=None)  # no per-example deadline: CI machines are shared and slow
def test_hostile_points_round_trip_through_reference_parser(pts: list[Point]) -> None:
    body = Serializer().lines(pts)
    assert body.count("\n") == len(pts), "one physical line per point"
    assert parse_body(body) == [expected(p) for p in pts]


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
@settings(deadline=None)
def test_a_hostile_tag_value_cannot_inject_a_point(alias: str, tail: str) -> None:
    p = Point("interface", {"ifAlias": alias + "\n" + tail, "ifName": "eth0"}, {"ifHCInOctets": 1}, 10**18)
    (m, tags, fields, _t), = parse_body(to_lines([p]))
    assert m == "interface" and fields == {"ifHCInOctets": 1}
    assert tags == {"ifAlias": stored_name(alias + "\n" + tail), "ifName": "eth0"}


def test_examples_spelled_out() -> None:
    p = Point("interface", {"ifAlias": "x\n y=1", "host": "C:\\ Label"}, {"s": 'say "hi"\\\n', "n": 3}, 1_500_000)
    assert to_line(p) == 'interface,host=C:/\\ Label,ifAlias=x\\ \\ y\\=1 s="say \\"hi\\"\\\\\\n",n=3i 1500'
    assert to_line(Point("m", {}, {"big": 2**64 - 1, "b": False, "f": 0.1}, 0)) == (
        "m big=1.8446744073709552e+19,b=false,f=0.1 0"
    )
    assert to_line(Point("m", {}, {"w": "C:\\Windows"}, 0)) == 'm w="C:\\\\Windows" 0'
    assert stored_name("C:\\Windows") == "C:\\Windows"


def test_unrepresentable_points_are_refused_with_the_reason() -> None:
    with pytest.raises(LineProtocolError, match="comment"):
        to_line(Point("#m", {}, {"f": 1}))
    with pytest.raises(LineProtocolError, match="empty tag key"):
        to_line(Point("m", {"": "x"}, {"f": 1}))


# ---------------------------------------------------------------- real influxd

_db_counter = itertools.count()


def _post(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _influxql(srv: Influxd, q: str, db: str) -> dict:
    status, text = _post(f"{srv.url}/query?" + urllib.parse.urlencode({"q": q, "db": db, "epoch": "u"}), b"")
    assert status == 200, text
    return json.loads(text)


@given(st.lists(points(), min_size=1, max_size=4))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_points_round_trip_through_real_influxd(influxd: Influxd, pts: list[Point]) -> None:
    """Each example gets a fresh database; what influxd holds must be exactly the expected points."""
    types: dict[tuple[str, str], type] = {}
    for m, _t, f, _ts in map(expected, pts):
        for k, v in f.items():
            assume(types.setdefault((m, k), type(v)) is type(v))  # one type per field, as InfluxDB requires
    # influxd keeps the last point per (series, time): make times distinct so every point is kept.
    pts = [Point(p.measurement, p.tags, p.fields, p.time + i * 1000) for i, p in enumerate(pts)]
    db = f"lp{next(_db_counter)}"
    _influxql(influxd, f'CREATE DATABASE "{db}"', db)
    try:
        status, text = _post(f"{influxd.url}/write?db={db}&precision=u", Serializer().encode(pts))
        assert status == 204, text
        # One query per measurement: a regex over several would merge fields of different types.
        shown = _influxql(influxd, "SHOW MEASUREMENTS", db)["results"][0]["series"][0]["values"]
        series = []
        for (name,) in shown:
            res = _influxql(influxd, f"SELECT * FROM {quote_ident(name)} GROUP BY *", db)["results"][0]
            series += res.get("series", [])
        got = []
        for s in series:
            tags = {k: v for k, v in s.get("tags", {}).items() if v != ""}
            for row in s["values"]:
                fields = {c: v for c, v in zip(s["columns"][1:], row[1:], strict=True) if v is not None}
                got.append((s["name"], tags, fields, row[0]))
        want = sorted((expected(p) for p in pts), key=lambda x: x[3])
        got.sort(key=lambda x: x[3])
        # InfluxDB's JSON prints an integral float without a fraction: read it back as the float it is.
        got = [
            (m, t, {k: float(v) if isinstance(w[2].get(k), float) else v for k, v in f.items()}, ts)
            for (m, t, f, ts), w in zip(got, want, strict=False)
        ]
        assert got == want
    finally:
        _influxql(influxd, f'DROP DATABASE "{db}"', db)
