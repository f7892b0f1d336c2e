"""What Grafana's InfluxDB (InfluxQL) datasource does to a dashboard query before sending it, done here so
the shipped dashboards' queries can be run against a real InfluxDB (no Grafana server can be installed).

- `$timeFilter` becomes `time >= <from>ms and time <= <to>ms`; `$__interval` / `$interval` an interval.
- A template variable written `${var:regex}` becomes its selected values escaped by Grafana's `regex` format
  (every regex metacharacter and `/`), several joined with `|` in a group; `All` becomes the variable's custom
  `allValue` unformatted, as Grafana does for custom all-values. Plain `$var` is refused: its escaping differs
  between Grafana versions.
- Queries go to `/query` with `epoch=ms`, as Grafana sends them.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def format_selection(values: Sequence[str] | None, all_value: str) -> str:
    """None means `All`; a selection (a list, even of one) becomes a group, as Grafana's regex format makes it."""
    if values is None:
        return all_value
    return "(" + "|".join(regex_escape(v) for v in values) + ")"


def interpolate(query: str, start_ms: int, end_ms: int, interval: str, variables: Mapping[str, str]) -> str:
    q = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    q = q.replace("$__interval", interval).replace("$interval", interval)

    def sub(m: re.Match[str]) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2)
        if m.group(3) or fmt != "regex":
            raise AssertionError(f"${name} without the :regex format in {query}")
        if name not in variables:
            raise KeyError(f"query uses ${name}, which the dashboard does not define: {query}")
        return variables[name]

    return _VAR.sub(sub, q)


class InfluxQL:
    """Runs queries the way Grafana's datasource does and raises on any InfluxDB error."""

    def __init__(self, url: str, database: str) -> None:
        self.url, self.database = url, database

    def run(self, query: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"db": self.database, "q": query, "epoch": "ms"})
        try:
            with urllib.request.urlopen(f"{self.url}/query?{params}", timeout=15) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"InfluxDB answered {exc.code} to {query!r}: {exc.read()[:500]!r}") from None
        if "error" in body:
            raise AssertionError(f"InfluxDB error for {query!r}: {body['error']}")
        series: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise AssertionError(f"InfluxDB error for {query!r}: {result['error']}")
            series.extend(result.get("series", []))
        return series

    def tag_values(self, query: str) -> list[str]:
        """SHOW TAG VALUES answers rows of (key, value)."""
        return sorted({row[1] for s in self.run(query) for row in s.get("values", [])})


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten series to dicts of tags + columns, one per row (what a Grafana table would show)."""
    out = []
    for s in series:
        for values in s.get("values", []):
            out.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
    return out
