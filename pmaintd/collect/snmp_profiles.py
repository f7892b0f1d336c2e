r"""SNMP device profiles: which tables to walk on a device, and how rows become points.

The format follows Datadog's SNMP profiles, so their authors' knowledge carries over:

    extends: [_generic-if.yaml]          # other profiles whose metrics this one includes
    sysobjectid: [1.3.6.1.4.1.9.*]       # patterns of the agent's sysObjectID ('*' matches any rest)
    metrics:
      - MIB: CISCO-ENVMON-MIB
        measurement: snmp_sensor         # pmaintd: where the rows go (default "snmp")
        table: {OID: 1.3.6.1.4.1.9.9.13.1.3, name: ciscoEnvMonTemperatureStatusTable}
        symbols:                         # columns that become fields, named after the MIB object
          - {OID: 1.3.6.1.4.1.9.9.13.1.3.1.3, name: value, metric_type: gauge}
        metric_tags:                     # columns (of this or another table with the same index) that tag rows
          - {tag: sensor, column: {OID: 1.3.6.1.4.1.9.9.13.1.3.1.2, name: ciscoEnvMonTemperatureStatusDescr}}
          - {tag: sensor_index, index: all}         # the row index ('all', or the Nth sub-identifier)
          - {tag: sensor_type, column: {...}, mapping: {8: celsius}}   # enum -> text
          - {tag: sensor, template: "{ifName} rx power"}               # built from tags found so far
          - column: {OID: 1.3.6.1.2.1.47.1.1.1.1.2, name: entPhysicalDescr}   # part of a column's text:
            match: '^DOM .+ Sensor for (\S+)'                                 # a regex searched in it,
            tags: {ifName: '\1'}                                              # tags expanded from its groups
        static_tags: {sensor_type: celsius}
        reading: {value: value, scale: scale, precision: precision, factor: 1}

A tag listed more than once takes the first non-empty value, which is how a profile says "entPhysicalName,
else entPhysicalDescr". `match`/`tags` is Datadog's form for tags taken from part of a column's text (a column
value the regex does not match gives no tag); it is how a profile ties an ENTITY-MIB sensor to its interface
when the agent names the interface only in the sensor's description (Arista EOS). `reading` (pmaintd) adds a
float field `reading` in the sensor's natural unit beside the raw `value`: value * factor * 1000^(scale - 9) /
10^precision, where `scale` and `precision` name fields holding ENTITY-SENSOR-MIB style codes (SensorDataScale
9 = units); the collector turns a transceiver's optical power in watts into dBm (collect/snmp.py). Every OID is
numeric: Debian ships no IETF MIBs, and numeric OIDs never depend on a MIB compiler.

Rows of one measurement with the same index and static tags merge into one point (ifTable + ifXTable make one
`interface` point per ifIndex).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

METRIC_TYPES = ("gauge", "monotonic_count")
"""How a field behaves: a gauge is a level; a monotonic_count only grows (and wraps), so features take rates."""

_OID_RE = re.compile(r"^\d+(\.\d+)+$")
_PATTERN_RE = re.compile(r"^(\d+(\.\d+)*)?(\.?\*)?$")


class ProfileError(Exception):
    """A profile file is malformed; the message names the file and the offending entry."""


def parse_oid(text: object, where: str) -> tuple[int, ...]:
    """A dotted numeric OID as a tuple; ProfileError naming `where` otherwise."""
    s = str(text).strip().lstrip(".")
    if not _OID_RE.match(s):
        raise ProfileError(f"{where}: {text!r} is not a numeric OID such as 1.3.6.1.2.1.2.2.1.10")
    return tuple(int(p) for p in s.split("."))


def oid_str(oid: tuple[int, ...]) -> str:
    return ".".join(map(str, oid))


@dataclass(frozen=True)
class Symbol:
    """A table column that becomes a field."""

    oid: tuple[int, ...]
    name: str
    metric_type: str | None = None
    """gauge or monotonic_count; None means decided by the value's SNMP type (Counter* -> monotonic_count)."""


@dataclass(frozen=True)
class TagSpec:
    """How one tag of a row is found: a column, the row index, or a template over earlier tags."""

    tag: str
    column: tuple[int, ...] | None = None
    column_name: str = ""
    index: int | None = None
    """1-based sub-identifier of the row index; 0 means the whole index ('all')."""
    template: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    match: re.Pattern[str] | None = None
    """With a column: the regex searched in the column's text; the tag is `expand` filled from its groups."""
    expand: str = ""


@dataclass(frozen=True)
class Reading:
    value: str
    scale: str | None = None
    precision: str | None = None
    factor: float = 1.0


@dataclass(frozen=True)
class MetricTable:
    """One `metrics:` entry: a table walked column by column, its rows turned into points."""

    measurement: str
    table_name: str
    mib: str
    symbols: tuple[Symbol, ...]
    tags: tuple[TagSpec, ...]
    static_tags: Mapping[str, str]
    reading: Reading | None

    def columns(self) -> list[tuple[int, ...]]:
        """Every column this entry needs walked (fields and tag columns)."""
        cols = [s.oid for s in self.symbols] + [t.column for t in self.tags if t.column is not None]
        return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class Profile:
    name: str
    path: str
    sysobjectid: tuple[str, ...]
    metrics: tuple[MetricTable, ...]
    extends: tuple[str, ...]

    def columns(self) -> list[tuple[int, ...]]:
        """All columns of all tables, deduplicated, in walk order."""
        return list(dict.fromkeys(c for m in self.metrics for c in m.columns()))


@dataclass(frozen=True)
class Match:
    profile: Profile
    reason: str


def _as_list(v: object, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ProfileError(f"{where}: expected a list, found {type(v).__name__}")
    return v


_GROUP_REF_RE = re.compile(r"\\(\d+)|\\g<(\w+)>")


def _parse_tags(raw: object, where: str) -> list[TagSpec]:
    """One `metric_tags` entry: one TagSpec, or one per name of a `match`/`tags` entry."""
    if isinstance(raw, dict) and "match" in raw:
        return _parse_match(raw, where)
    return [_parse_tag(raw, where)]


def _parse_match(raw: dict[str, Any], where: str) -> list[TagSpec]:
    col, tags = raw.get("column"), raw.get("tags")
    if set(raw) - {"column", "match", "tags"} or not isinstance(col, dict) or "OID" not in col:
        raise ProfileError(f"{where}: a 'match' entry takes exactly column (with an OID), match and tags")
    if not isinstance(tags, dict) or not tags or not all(isinstance(v, str) for v in tags.values()):
        raise ProfileError(f"{where}: 'tags' must map tag names to templates such as '\\1'")
    try:
        pattern = re.compile(str(raw["match"]))
    except re.error as exc:
        raise ProfileError(f"{where}: match {raw['match']!r} is not a valid regex: {exc}") from None
    for template in tags.values():
        for num, name in _GROUP_REF_RE.findall(template):
            ref = num or name
            if int(ref) > pattern.groups if ref.isdigit() else ref not in pattern.groupindex:
                raise ProfileError(f"{where}: template {template!r} names a group that match {pattern.pattern!r} "
                                   "does not have")
    column = parse_oid(col["OID"], where)
    return [TagSpec(str(tag), column=column, column_name=str(col.get("name", "")), match=pattern, expand=template)
            for tag, template in tags.items()]


def _parse_tag(raw: object, where: str) -> TagSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("tag"), str):
        raise ProfileError(f"{where}: expected a mapping with a 'tag' name")
    mapping = {str(k): str(v) for k, v in (raw.get("mapping") or {}).items()}
    kinds = [k for k in ("column", "index", "template") if k in raw]
    if len(kinds) != 1:
        raise ProfileError(f"{where}: tag {raw['tag']!r} needs exactly one of column, index, template")
    if "column" in raw:
        col = raw["column"]
        if not isinstance(col, dict) or "OID" not in col:
            raise ProfileError(f"{where}: column needs an OID")
        return TagSpec(raw["tag"], column=parse_oid(col["OID"], where), column_name=str(col.get("name", "")),
                       mapping=mapping)
    if "index" in raw:
        idx = raw["index"]
        if idx == "all":
            return TagSpec(raw["tag"], index=0, mapping=mapping)
        if not isinstance(idx, int) or idx < 1:
            raise ProfileError(f"{where}: index must be 'all' or a positive integer, not {idx!r}")
        return TagSpec(raw["tag"], index=idx, mapping=mapping)
    return TagSpec(raw["tag"], template=str(raw["template"]))


def _parse_metric(raw: object, where: str) -> MetricTable:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping")
    unknown = set(raw) - {"MIB", "measurement", "table", "symbols", "metric_tags", "static_tags", "reading"}
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
    table = raw.get("table") or {}
    if not isinstance(table, dict) or "OID" not in table:
        raise ProfileError(f"{where}: 'table' needs an OID (only table metrics are supported)")
    table_oid = parse_oid(table["OID"], f"{where}.table")
    symbols = []
    for j, s in enumerate(_as_list(raw.get("symbols"), f"{where}.symbols")):
        sw = f"{where}.symbols[{j}]"
        if not isinstance(s, dict) or "OID" not in s or not isinstance(s.get("name"), str):
            raise ProfileError(f"{sw}: needs OID and name")
        oid = parse_oid(s["OID"], sw)
        if oid[: len(table_oid)] != table_oid:
            raise ProfileError(f"{sw}: {oid_str(oid)} is not a column of table {oid_str(table_oid)}")
        mt = s.get("metric_type")
        if mt is not None and mt not in METRIC_TYPES:
            raise ProfileError(f"{sw}: metric_type {mt!r} is not one of {', '.join(METRIC_TYPES)}")
        symbols.append(Symbol(oid, s["name"], mt))
    if not symbols:
        raise ProfileError(f"{where}: needs at least one symbol")
    raw_tags = _as_list(raw.get("metric_tags"), f"{where}.metric_tags")
    tags = tuple(spec for j, t in enumerate(raw_tags) for spec in _parse_tags(t, f"{where}.metric_tags[{j}]"))
    static = raw.get("static_tags") or {}
    if not isinstance(static, dict):
        raise ProfileError(f"{where}.static_tags: expected a mapping of tag: value")
    reading = None
    if raw.get("reading") is not None:
        r = raw["reading"]
        names = {s.name for s in symbols}
        if not isinstance(r, dict) or r.get("value") not in names:
            raise ProfileError(f"{where}.reading: 'value' must name one of the symbols {sorted(names)}")
        for k in ("scale", "precision"):
            if r.get(k) is not None and r[k] not in names:
                raise ProfileError(f"{where}.reading: {k} {r[k]!r} must name one of the symbols {sorted(names)}")
        reading = Reading(r["value"], r.get("scale"), r.get("precision"), float(r.get("factor", 1.0)))
    return MetricTable(
        measurement=str(raw.get("measurement", "snmp")),
        table_name=str(table.get("name", oid_str(table_oid))),
        mib=str(raw.get("MIB", "")),
        symbols=tuple(symbols),
        tags=tags,
        static_tags={str(k): str(v) for k, v in static.items()},
        reading=reading,
    )


def _read_raw(node: Traversable | Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(node.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{node.name}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ProfileError(f"{node.name}: expected a mapping at the top level")
    unknown = set(doc) - {"extends", "sysobjectid", "metrics", "description"}
    if unknown:
        raise ProfileError(f"{node.name}: unknown top-level keys {sorted(unknown)}")
    return doc


def _profile_name(filename: str) -> str:
    return filename.removesuffix(".yaml")


class ProfileSet:
    """Every profile pmaintd knows, resolved (extends flattened) and ready to match sysObjectIDs.

    Later folders replace earlier ones by file name, so an operator's folder can override a shipped profile.
    Names starting with '_' are fragments meant only for `extends:`; they never match a device on their own.
    """

    def __init__(self, folders: Iterable[Traversable | Path]) -> None:
        raw: dict[str, tuple[str, dict[str, Any]]] = {}
        for folder in folders:
            for node in sorted(folder.iterdir(), key=lambda n: n.name):
                if node.name.endswith(".yaml"):
                    raw[_profile_name(node.name)] = (str(node), _read_raw(node))
        self._raw = raw
        self.profiles: dict[str, Profile] = {}
        for name in raw:
            self.profiles[name] = self._resolve(name, ())

    def _resolve(self, name: str, chain: tuple[str, ...]) -> Profile:
        if name in self.profiles:
            return self.profiles[name]
        if name in chain:
            raise ProfileError(f"{name}.yaml: extends itself through {' -> '.join(chain)}")
        if name not in self._raw:
            raise ProfileError(f"{chain[-1]}.yaml: extends unknown profile {name}.yaml")
        path, doc = self._raw[name]
        metrics: list[MetricTable] = []
        extends = tuple(_profile_name(str(e)) for e in _as_list(doc.get("extends"), f"{name}.extends"))
        for parent in extends:
            metrics.extend(self._resolve(parent, (*chain, name)).metrics)
        for i, m in enumerate(_as_list(doc.get("metrics"), f"{name}.metrics")):
            metrics.append(_parse_metric(m, f"{name}.yaml metrics[{i}]"))
        patterns = tuple(str(p) for p in _as_list(doc.get("sysobjectid"), f"{name}.sysobjectid"))
        for p in patterns:
            if not _PATTERN_RE.match(p.lstrip(".")):
                raise ProfileError(f"{name}.yaml: sysobjectid pattern {p!r} is not a numeric OID with optional '*'")
        prof = Profile(name, path, patterns, tuple(metrics), extends)
        self.profiles[name] = prof
        return prof

    def names(self) -> list[str]:
        """Profiles that can be chosen for a device (fragments excluded)."""
        return sorted(n for n in self.profiles if not n.startswith("_"))

    def get(self, name: str) -> Profile:
        if name not in self.profiles or name.startswith("_"):
            raise KeyError(f"unknown SNMP profile {name!r}; known: {', '.join(self.names())}")
        return self.profiles[name]

    def match(self, sysobjectid: str) -> Match | None:
        """The profile whose pattern matches sysObjectID most specifically.

        An exact pattern beats any wildcard; among wildcards the longest literal prefix wins (so
        1.3.6.1.4.1.9.1.* beats 1.3.6.1.4.1.9.* beats *). None when nothing matches.
        """
        oid = sysobjectid.strip().lstrip(".")
        best: tuple[tuple[int, int], Profile, str] | None = None
        for name in self.names():
            prof = self.profiles[name]
            for pat in prof.sysobjectid:
                score = _pattern_score(pat.lstrip("."), oid)
                if score is not None and (best is None or score > best[0]):
                    best = (score, prof, pat)
        if best is None:
            return None
        _, prof, pat = best
        return Match(prof, f"sysObjectID {oid} matches {pat!r} in {prof.name}.yaml")


def _pattern_score(pattern: str, oid: str) -> tuple[int, int] | None:
    if "*" not in pattern:
        return (1, len(pattern)) if pattern == oid else None
    prefix = pattern.split("*", 1)[0]
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"
    return (0, len(prefix)) if re.match(regex, oid) else None
