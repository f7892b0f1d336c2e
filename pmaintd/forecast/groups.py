"""What the training drives say about each disk model: its failure risk and its healthy drives' counter levels.

A drive with 8 reallocated sectors is a different risk on a model whose healthy drives commonly report some
than on one whose healthy drives report none, and some models fail several times as often as others
(Backblaze's per-model failure rates differ tenfold). The feature function cannot know either from one drive's
history, and same-day peer statistics leak the era in the Backblaze histories (see features.DISK_SPEC). So, like
a fitted scikit-learn TargetEncoder inside a pipeline, `GroupTable.fit` learns per model, on the train part's
drives only:

- `group__risk`: log of the model's failure rate over the fleet's, smoothed towards 0 with `SMOOTHING`
  pseudo-drives, so a model seen on a handful of drives says little;
- `<counter>__rel`: log1p(last value) minus the mean log1p of that counter over the model's healthy rows (the
  fleet's mean for models with fewer than `MIN_ENTITIES` healthy drives).

The table is stored in bundle.json and `Bundle.matrix` applies it, so training, backtest and live scoring compute
the same columns. A model the table has never seen gets risk 0 and the fleet's levels: it is scored as an average
drive, not guessed at. Models are matched on `group_key` (smartctl's "ST4000DM000-1F2168" is Backblaze's
"ST4000DM000").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

RISK = "group__risk"
SMOOTHING = 20.0
"""Pseudo-drives at the fleet's failure rate added to every model's counts."""
MIN_ENTITIES = 20
"""Healthy drives a model needs before its own counter levels replace the fleet's."""


def group_key(expr: pl.Expr) -> pl.Expr:
    """Upper-case, single-spaced model string without a trailing firmware/variant suffix ("-1F2168")."""
    e = expr.cast(pl.Utf8).fill_null("").str.to_uppercase().str.strip_chars().str.replace_all(r"\s+", " ")
    return e.str.replace(r"-[A-Z0-9]{2,}$", "")


def rel_name(counter: str) -> str:
    return f"{counter}__rel"


@dataclass(frozen=True)
class GroupTable:
    """Per-group risk and healthy counter levels; see the module docstring."""

    column: str
    risk: dict[str, float]
    level: dict[str, dict[str, float]]
    """counter -> group key -> mean log1p(last value) over the group's healthy rows."""
    fleet_level: dict[str, float]
    """counter -> the same mean over every healthy row: the level of a group not in `level`."""
    entities: dict[str, tuple[int, int]]
    """group key -> (entities, failed entities) it was learned from."""

    @property
    def counters(self) -> list[str]:
        return list(self.fleet_level)

    def feature_names(self) -> list[str]:
        return [RISK, *[rel_name(c) for c in self.counters]]

    @classmethod
    def fit(cls, rows: pl.DataFrame, entity: str, column: str, counters: Sequence[str]) -> GroupTable:
        """Learn from labeled training rows (entity, group column, failure_time, `<counter>__last`)."""
        keyed = rows.with_columns(group_key(pl.col(column)).alias("__g"))
        per = keyed.group_by(entity).agg(
            pl.col("__g").last(), pl.col("failure_time").first().is_not_null().alias("__failed")
        )
        fleet_rate = max(float(per["__failed"].mean() or 0.0), 1e-6)
        counts = per.group_by("__g").agg(pl.len().alias("n"), pl.col("__failed").sum().alias("f")).sort("__g")
        risk = {
            str(g): float(np.log(((f + SMOOTHING * fleet_rate) / (n + SMOOTHING)) / fleet_rate))
            for g, n, f in counts.iter_rows()
        }
        healthy = keyed.filter(pl.col("failure_time").is_null())
        logs = [pl.col(f"{c}__last").clip(lower_bound=0).log1p().mean().alias(c) for c in counters]
        fleet = healthy.select(logs).row(0, named=True)
        by_group = (
            healthy.group_by("__g")
            .agg(pl.col(entity).n_unique().alias("__n"), *logs)
            .filter(pl.col("__n") >= MIN_ENTITIES)
            .sort("__g")
        )
        level = {c: {str(g): float(v) for g, v in zip(by_group["__g"], by_group[c], strict=True) if v is not None}
                 for c in counters}
        return cls(
            column=column,
            risk=risk,
            level=level,
            fleet_level={c: float(fleet[c] or 0.0) for c in counters},
            entities={str(g): (int(n), int(f)) for g, n, f in counts.iter_rows()},
        )

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` with the table's feature columns (float32) replaced or added; row order is kept."""
        key = group_key(pl.col(self.column)) if self.column in frame.columns else pl.lit("")
        cols = [key.replace_strict(self.risk, default=0.0, return_dtype=pl.Float64).cast(pl.Float32).alias(RISK)]
        for c in self.counters:
            base = key.replace_strict(self.level[c], default=self.fleet_level[c], return_dtype=pl.Float64)
            value = pl.col(f"{c}__last").cast(pl.Float64).clip(lower_bound=0).log1p()
            cols.append((value - base).cast(pl.Float32).alias(rel_name(c)))
        return frame.with_columns(cols)

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "smoothing": SMOOTHING,
            "min_entities": MIN_ENTITIES,
            "risk": self.risk,
            "level": self.level,
            "fleet_level": self.fleet_level,
            "entities": {g: list(v) for g, v in self.entities.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupTable:
        return cls(
            column=str(data["column"]),
            risk={str(k): float(v) for k, v in data["risk"].items()},
            level={str(c): {str(k): float(v) for k, v in m.items()} for c, m in data["level"].items()},
            fleet_level={str(c): float(v) for c, v in data["fleet_level"].items()},
            entities={str(k): (int(v[0]), int(v[1])) for k, v in data.get("entities", {}).items()},
        )
