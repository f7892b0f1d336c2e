"""Champion/challenger retraining.

A challenger is trained on labeled rows (from the store and/or Backblaze files); when the data hold few failures
it is fine-tuned from the champion (LightGBM `init_model`) instead of learning from scratch. Both models are then
backtested on the same rows: the most recent `recent_window` of the challenger's held-out entities, which it
never saw. The challenger is promoted only if it is not worse: recall at the false-alarm budget at least the
champion's, and its own threshold within the budget (plus one entity, so that a small window is not judged
by a single drive). Every challenger is kept under the state dir; promotion
replaces the registry's `current` pointer, which a running daemon watches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import polars as pl

from pmaintd.forecast.bundle import Bundle, Registry
from pmaintd.forecast.evaluate import evaluate
from pmaintd.forecast.features import FeatureSpec
from pmaintd.forecast.train import TrainOptions, assign_parts, fit


@dataclass
class RetrainResult:
    kind: str
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    finetuned: bool
    window: dict[str, str]
    challenger: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _recall_key(budget: float) -> str:
    return f"recall_at_far_{budget:g}"


def compare(challenger: dict[str, Any], champion: dict[str, Any] | None, budget: float) -> tuple[bool, str]:
    """Promote when the challenger is not worse; the reason says which figures decided."""
    key = _recall_key(budget)
    c_rec, c_far = challenger.get(key), challenger.get("far_at_threshold")
    if c_rec is None or c_far is None:
        return False, "the recent window has no failed and healthy entities to compare on"
    # One false-alarming entity of slack: on a window of 70 healthy disks a single alarm is already 1.4%.
    allowed = budget + 1 / max(int(challenger.get("entities_healthy") or 1), 1)
    if c_far > allowed:
        return False, f"challenger FAR at its threshold {c_far:.4f} exceeds the budget {budget:g} (+1 entity)"
    if champion is None:
        return True, "no champion model"
    h_rec = champion.get(key)
    if h_rec is not None and c_rec < h_rec:
        return False, f"challenger recall {c_rec:.3f} < champion {h_rec:.3f} at FAR {budget:g}"
    return True, f"challenger recall {c_rec:.3f} >= champion {h_rec if h_rec is not None else 'n/a'} at FAR {budget:g}"


def retrain(
    kind: str,
    labeled: pl.DataFrame,
    spec: FeatureSpec,
    registry: Registry,
    opts: TrainOptions,
    recent_window_s: float,
    finetune_below_failures: int,
    data_hash: str = "",
    log: Callable[[str], None] = lambda _m: None,
) -> RetrainResult:
    """Train, backtest against the champion on the same recent rows, keep the challenger, promote if not worse."""
    ent, tm = spec.entity, spec.time
    champion_path = registry.current_path(kind)
    champion = registry.current(kind)
    n_failed = labeled.filter(pl.col("label") == 1)[ent].n_unique()
    finetune = champion is not None and champion_path is not None and n_failed < finetune_below_failures
    end = labeled[tm].max()
    # The recent window never takes more than the later half of the history: a young installation with less
    # history than `recent_window` still has something to train the challenger on.
    start = max(end - timedelta(seconds=recent_window_s), labeled[tm].min() + (end - labeled[tm].min()) / 2)
    train_opts = replace(
        opts,
        valid_from=start.replace(tzinfo=None).isoformat(),
        init_model=str(champion_path / "model.txt") if finetune and champion_path else None,
    )
    log(f"{n_failed} failed entities; {'fine-tuning' if finetune else 'training'} a challenger; window {start}..{end}")
    challenger, _ = fit(labeled, spec, train_opts, data_hash=data_hash, log=log)
    registry.add(challenger)
    window = assign_parts(labeled, ent, train_opts).filter((pl.col("part") != "train") & (pl.col(tm) >= start))
    results = {"challenger": _score(challenger, window, ent, tm, opts)}
    if champion is not None:
        results["champion"] = _score(champion, window, ent, tm, opts)
    promote, reason = compare(results["challenger"], results.get("champion"), opts.far_budget)
    if promote:
        registry.promote(kind, challenger.version)
    return RetrainResult(
        kind=kind,
        promoted=promote,
        reason=reason,
        challenger_version=challenger.version,
        champion_version=champion.version if champion else None,
        finetuned=finetune,
        window={"start": str(start), "end": str(end)},
        challenger=results["challenger"],
        champion=results.get("champion", {}),
    )


def _score(bundle: Bundle, rows: pl.DataFrame, ent: str, tm: str, opts: TrainOptions) -> dict[str, Any]:
    scored = rows.select(ent, tm, "failure_time").with_columns(pl.Series("score", bundle.predict(rows)))
    return {"version": bundle.version, "threshold": bundle.threshold,
            **evaluate(scored, ent, tm, opts.horizon_hours, bundle.threshold, (opts.far_budget,))}
