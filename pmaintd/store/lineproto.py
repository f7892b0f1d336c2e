"""InfluxDB line protocol, written by plain string building (one physical line per point, always).

Device strings (ifAlias, model names, Windows paths) are hostile, so every name and value is escaped, and
the text is built so that InfluxDB 1.x/2.x (Go `models` parser) and 3.x (Rust parser) read it identically.
The rules, and what a value reads back as (`stored_name` / `stored_string` compute it):

- measurement: `,` and space are escaped; it may not start with `#` (the line would be a comment).
- tag keys, tag values, field keys: `,`, `=` and space are escaped.
- in all of these, control characters (newline, CR, tab, NUL, ...) become a space: InfluxDB cannot carry
  them there, and a raw newline would end the point. A backslash followed by `,`, `=`, space, `"`,
  another backslash or the end of the text becomes `/` (`C:\\ Label` reads back as `C:/ Label`): the Go
  parser cannot spell it (it reads `\\\\,` as an escaped comma) and the Rust parser reads `\\\\` as one
  backslash, so no spelling is read the same by both. Every other backslash (`C:\\Windows`) is kept.
- string fields: `\\` and `"` are escaped; newline and CR are written as the two characters `\\n` / `\\r`
  (Telegraf's spelling), so a string field never spans lines and reads back with `\\n` in it.
- integers get the `i` suffix; integers outside int64 (Counter64 above 2**63-1) are written as floats,
  because InfluxDB 1.x has no unsigned type (`u` needs 1.8+ with a flag) and a field must keep one type.
- bools are `true`/`false`; floats use Python's shortest round-trip `repr`.
- time is in microseconds (the writer asks for `precision=u`; InfluxDB 1.x reads an unknown `us` as ns).

Escaped names are cached: collectors emit the same series and field names over and over.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pmaintd.telemetry import Point

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_CACHE_MAX = 200_000

# Control characters (C0, DEL) become spaces in names and tags.
_CONTROL = {c: " " for c in [*range(0x20), 0x7F]}
# A backslash before a character the protocol escapes (or another backslash, or the end) cannot be
# spelled the same way for every InfluxDB parser: it becomes a slash.
_BAD_BACKSLASH = re.compile(r"\\(?=[\\, =\"]|$)")
_NAME_SPECIAL = re.compile(r"[\x00-\x1f\x7f\\, =]")
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


class LineProtocolError(ValueError):
    """A point that no InfluxDB can store as given (e.g. an empty tag key); names the point and why."""


def stored_name(text: str) -> str:
    """What a measurement, tag key, tag value or field key reads back as from InfluxDB."""
    if not _NAME_SPECIAL.search(text):
        return text
    return _BAD_BACKSLASH.sub("/", text.translate(_CONTROL))


def stored_string(text: str) -> str:
    """What a string field value reads back as: newline and CR become the two characters `\\n`, `\\r`."""
    return text.replace("\n", "\\n").replace("\r", "\\r")


def _escape_key(text: str) -> str:
    """Tag key, tag value or field key: `,`, `=`, space escaped after `stored_name`."""
    clean = stored_name(text)
    if "," in clean or "=" in clean or " " in clean:
        clean = clean.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")
    return clean


def _escape_measurement(text: str) -> str:
    clean = stored_name(text)
    if clean.startswith("#"):
        raise LineProtocolError(f"measurement {text!r} starts with '#', which line protocol reads as a comment")
    if "," in clean or " " in clean:
        clean = clean.replace(",", "\\,").replace(" ", "\\ ")
    return clean


class Serializer:
    """Turns Points into line protocol, caching escaped series keys and field keys.

    The series cache is keyed by the tags in the order the collector built them (no sort on a hit);
    the text itself always has tags sorted by key, as InfluxDB prefers. Safe to share between threads:
    at worst two threads compute the same cache entry.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._keys: dict[str, str] = {}

    def _series_key(self, measurement: str, tags: Mapping[str, str]) -> str:
        key = (measurement, tuple(tags.items()))
        s = self._series.get(key)
        if s is None:
            parts = [_escape_measurement(measurement)]
            for k, v in sorted(tags.items()):
                if not k:
                    raise LineProtocolError(f"{measurement} point has an empty tag key (value {v!r})")
                parts.append(f"{_escape_key(k)}={_escape_key(v)}")
            s = ",".join(parts)
            if len(self._series) >= _CACHE_MAX:
                self._series.clear()
            self._series[key] = s
        return s

    def _field_key(self, name: str) -> str:
        k = self._keys.get(name)
        if k is None:
            if not name:
                raise LineProtocolError("a point has an empty field key")
            k = _escape_key(name)
            if len(self._keys) >= _CACHE_MAX:
                self._keys.clear()
            self._keys[name] = k
        return k

    def lines(self, points: Iterable[Point]) -> str:
        """Points as newline-terminated lines (the body of one write request).

        One loop with everything inlined: this is the hot path of every InfluxDB write.
        """
        series, keys = self._series, self._keys
        out: list[str] = []
        append = out.append
        for p in points:
            s = series.get((p.measurement, tuple(p.tags.items()))) or self._series_key(p.measurement, p.tags)
            parts = []
            for name, v in p.fields.items():
                k = keys.get(name) or self._field_key(name)
                t = type(v)
                if t is int:
                    parts.append(f"{k}={v}i" if _INT64_MIN <= v <= _INT64_MAX else f"{k}={float(v)!r}")
                elif t is float:
                    parts.append(f"{k}={v!r}")
                elif t is bool:
                    parts.append(f"{k}=true" if v else f"{k}=false")
                elif t is str:
                    parts.append(f'{k}="{v.translate(_STRING_ESCAPES)}"')
                else:
                    raise LineProtocolError(f"{p.measurement}.{name}: unsupported field type {t.__name__}")
            append(f"{s} {','.join(parts)} {p.time // 1000}\n")
        return "".join(out)

    def line(self, p: Point) -> str:
        """One point as one line, without the trailing newline."""
        return self.lines((p,))[:-1]

    def encode(self, points: Iterable[Point]) -> bytes:
        """The UTF-8 body of one write; a lone surrogate (undecodable device bytes) becomes `?`."""
        return self.lines(points).encode("utf-8", "replace")


_default = Serializer()


def to_line(p: Point) -> str:
    """One point as a line of line protocol (module-level convenience over a shared Serializer)."""
    return _default.line(p)


def to_lines(points: Iterable[Point]) -> str:
    """Many points, newline-terminated, with the shared Serializer's caches."""
    return _default.lines(points)
