"""Per-entity evaluation, exactly as issue 4 item 5 defines it, and the two reference baselines.

A failed entity (failure at time D) is caught when it alarms at some scoring time in [D - H, D); a healthy
entity raises a false alarm when it alarms at any scoring time in the last H of its record; FAR is the fraction
of healthy entities that do. Recall at a FAR budget uses the threshold that lets at most that fraction of
healthy entities alarm. Lead time is D minus the first alarming scoring time inside [D - H, D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

BUDGETS = (0.01, 0.001)


def entity_maxima(
    scored: pl.DataFrame, entity: str, time: str, horizon_hours: float, extra: Sequence[pl.Expr] = ()
) -> pl.DataFrame:
    """Per entity: failed (bool), max score in its evaluation window, and any `extra` aggregations over the
    same window rows.

    `scored` has entity, time, score and failure_time (null for entities that never failed).
    """
    h = pl.duration(microseconds=int(horizon_hours * 3600e6))
    last = pl.col(time).max().over(entity)
    in_window = (
        pl.when(pl.col("failure_time").is_not_null())
        .then((pl.col(time) >= pl.col("failure_time") - h) & (pl.col(time) < pl.col("failure_time")))
        .otherwise(pl.col(time) > last - h)
    )
    return (
        scored.filter(in_window)
        .group_by(entity)
        .agg(
            pl.col("failure_time").first().is_not_null().alias("failed"),
            pl.col("score").max().alias("max_score"),
            *extra,
        )
    )


def threshold_for_far(
    healthy_max: np.ndarray, budget: float, failed_max: np.ndarray | None = None
) -> float:
    """A threshold at which at most `budget` of healthy entities alarm (alarm: score >= threshold).

    The lowest such threshold is just above s[k], the highest healthy score that must not alarm. Without
    `failed_max` the threshold sits midway from s[k] to the next healthy score up, so an unseen entity a little
    above s[k] does not alarm. With `failed_max` (a threshold for deployment) it keeps every failure the lowest
    threshold catches and, among those thresholds, gives the fewest healthy alarms and the widest margin:
    midway between the lowest caught failure and the highest healthy score below it. On a small calibration
    part with well-separated failures the lowest threshold would spend the whole budget on healthy entities'
    noise (a host fleet's threshold sat at p = 0.0002 below failures at p > 0.2).
    """
    s = np.sort(np.asarray(healthy_max, dtype=np.float64))[::-1]
    k = math.floor(budget * len(s))
    if len(s) == 0:
        return 1.0
    if k >= len(s):
        return float(s[-1])
    if failed_max is not None:
        f = np.asarray(failed_max, dtype=np.float64)
        caught = f[f > s[k]]
        if len(caught):
            hi = float(caught.min())
            return (float(s[s < hi][0]) + hi) / 2
    upper = s[k - 1] if k > 0 else np.inf
    # Strictly above the (k+1)-th largest so ties there do not alarm; midway to the next one when possible.
    t = float(np.nextafter(s[k], np.inf))
    if np.isfinite(upper) and upper > t:
        t = float((s[k] + upper) / 2)
    return t


def evaluate(
    scored: pl.DataFrame,
    entity: str,
    time: str,
    horizon_hours: float,
    threshold: float | None = None,
    budgets: Sequence[float] = BUDGETS,
) -> dict[str, float | int | None]:
    """Recall at each FAR budget, FAR/recall at `threshold`, and median lead time at the first budget."""
    per = entity_maxima(scored, entity, time, horizon_hours)
    healthy = per.filter(~pl.col("failed"))["max_score"].to_numpy()
    failed = per.filter(pl.col("failed"))["max_score"].to_numpy()
    out: dict[str, float | int | None] = {"entities_failed": len(failed), "entities_healthy": len(healthy)}
    for b in budgets:
        t = threshold_for_far(healthy, b)
        out[f"recall_at_far_{b:g}"] = float(np.mean(failed >= t)) if len(failed) else None
        out[f"threshold_at_far_{b:g}"] = t
    lead_t = out[f"threshold_at_far_{budgets[0]:g}"]
    out[f"median_lead_hours_at_far_{budgets[0]:g}"] = median_lead_hours(scored, entity, time, horizon_hours, lead_t)
    if threshold is not None:
        out["far_at_threshold"] = float(np.mean(healthy >= threshold)) if len(healthy) else None
        out["recall_at_threshold"] = float(np.mean(failed >= threshold)) if len(failed) else None
        out["median_lead_hours_at_threshold"] = median_lead_hours(scored, entity, time, horizon_hours, threshold)
    return out


def median_lead_hours(
    scored: pl.DataFrame, entity: str, time: str, horizon_hours: float, threshold: float | None
) -> float | None:
    """Median over caught failed entities of (failure time - first alarm in the window), in hours."""
    if threshold is None:
        return None
    h = pl.duration(microseconds=int(horizon_hours * 3600e6))
    leads = (
        scored.filter(
            pl.col("failure_time").is_not_null()
            & (pl.col(time) >= pl.col("failure_time") - h)
            & (pl.col(time) < pl.col("failure_time"))
            & (pl.col("score") >= threshold)
        )
        .group_by(entity)
        .agg(((pl.col("failure_time").first() - pl.col(time).min()).dt.total_seconds() / 3600).alias("lead"))
    )
    return float(leads["lead"].median()) if leads.height else None


def backblaze_rule_score(frame: pl.DataFrame) -> pl.Expr:
    """Backblaze's rule as a score: the sum of SMART 5/187/188/197/198 raw (alarm at > 0 is the rule itself;
    ranking by the sum gives its recall at a FAR budget)."""
    cols = [c for c in ("smart_5_raw", "smart_187_raw", "smart_188_raw", "smart_197_raw", "smart_198_raw")
            if c in frame.columns]
    return pl.sum_horizontal(*[pl.col(c).fill_null(0).clip(lower_bound=0) for c in cols]).cast(pl.Float64)

