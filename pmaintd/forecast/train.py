"""LightGBM training: entity-disjoint (and optionally time-disjoint) split, Platt calibration on a held-out
calibration part, and a threshold that meets a per-entity false-alarm budget.

Parts (by a stable hash of the entity): `train` fits the trees, `calib` stops boosting early, fits the
calibration and picks the threshold, `test` is only scored, for the metrics the bundle and model card report.
Negatives of the train part are subsampled (positives are rare); calibration is fitted on the calib part's
natural class balance, which undoes the subsampling. Features are float32 and the raw matrix is freed once the
LightGBM Dataset is built. `train_in_subprocess` runs a training job in a spawned process, so the daemon's
event loop and memory are never held by it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression

from pmaintd.forecast.bundle import Bundle, new_version
from pmaintd.forecast.evaluate import entity_maxima, evaluate, threshold_for_far
from pmaintd.forecast.features import FeatureSpec, feature_names
from pmaintd.forecast.groups import GroupTable

PARTS = ("train", "calib", "test")


@dataclass(frozen=True)
class TrainOptions:
    horizon_hours: float = 168.0
    far_budget: float = 0.01
    far_margin: float = 0.5
    """The threshold is chosen for far_budget * far_margin on the calibration part, so that FAR on unseen
    entities stays within the budget: with ~4,400 healthy drives one standard error of a 1% FAR is 0.15%, and
    a 0.7 margin was seen to give 0.68% on the calibration drives but 1.01% on the test drives."""
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    negative_rate: float = 0.1
    rounds: int = 600
    early_stopping: int = 100
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 200
    num_threads: int = 2
    seed: int = 20130410
    """Salts the entity split (and, unless `model_seed` is set, the training's randomness)."""
    model_seed: int | None = None
    """Seed of the negative subsampling and of LightGBM, with the split kept: runs that differ only in it
    measure how much a recipe's figures owe to chance (see models/disk/MODEL_CARD.md, Limits)."""
    valid_from: str | None = None
    """ISO time: train only on rows before it, learn group tables only from failures before it, and evaluate
    calib/test only on rows from it on (time- and entity-disjoint)."""
    failed_negatives: bool = False
    """Train on the rows of failed entities before their horizon as negatives. Per-entity evaluation never
    looks at those rows, and as negatives they teach that a disk with growing errors weeks before it fails
    is not at risk."""
    init_model: str | None = None
    """A model.txt to continue boosting from (fine-tuning a champion on little local history)."""
    fold: tuple[int, int] | None = None
    """(i, k) for cross-validation: entities fall into k equal hash buckets; bucket i is the test part, the
    next one the calibration part, the rest train (`fractions` is then not used)."""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def training_seed(self) -> int:
        """The seed negative subsampling and LightGBM use: `model_seed`, else the split's `seed`."""
        return self.seed if self.model_seed is None else self.model_seed


def entity_parts(
    entities: pl.Series, fractions: Sequence[float], seed: int, fold: tuple[int, int] | None = None
) -> pl.Series:
    """Stable part name per entity from a salted SHA-1 (same entity -> same part on every run and machine)."""
    edges = np.cumsum(fractions) / np.sum(fractions)

    def part(e: str) -> str:
        h = int.from_bytes(hashlib.sha1(f"{seed}:{e}".encode()).digest()[:8], "big") / 2**64
        if fold is not None:
            i, k = fold
            bucket = int(h * k)
            return "test" if bucket == i else "calib" if bucket == (i + 1) % k else "train"
        return PARTS[int(np.searchsorted(edges, h, side="right"))] if h < edges[-1] else PARTS[-1]

    return entities.map_elements(part, return_dtype=pl.Utf8)


def assign_parts(labeled: pl.DataFrame, entity: str, opts: TrainOptions) -> pl.DataFrame:
    ents = labeled.select(pl.col(entity).unique())
    ents = ents.with_columns(entity_parts(ents[entity], opts.fractions, opts.seed, opts.fold).alias("part"))
    return labeled.join(ents, on=entity, how="left")


def split_parts(labeled: pl.DataFrame, entity: str, time: str, opts: TrainOptions) -> pl.DataFrame:
    """`assign_parts`, and with `valid_from` the time cut: train rows before it, calibration and test rows from
    it on. A train row within one horizon of the cut keeps the label a failure after the cut gives it; that
    failure is of a train entity, never of one that is evaluated. (Purging those rows as well left a young
    installation's retrain, whose recent window is the later half of its history, with almost no positives.)"""
    df = assign_parts(labeled, entity, opts)
    if not opts.valid_from:
        return df
    cut = utc_time(opts.valid_from)
    return df.filter(pl.when(pl.col("part") == "train").then(pl.col(time) < cut).otherwise(pl.col(time) >= cut))


def _subsample(train: pl.DataFrame, rate: float, seed: int, entity: str, time: str) -> pl.DataFrame:
    """All positives and all weighted rows (an operator's false-alarm labels); a deterministic `rate` share of
    the other negatives (by row hash, so reruns match)."""
    key = pl.struct(entity, time).hash(seed) % 1_000_000
    keep = (pl.col("label") == 1) | (key < int(rate * 1_000_000))
    if "weight" in train.columns:
        keep = keep | (pl.col("weight") > 1)
    return train.filter(keep)


def _training_rows(df: pl.DataFrame, opts: TrainOptions, ent: str, tm: str) -> pl.DataFrame:
    """The train part's rows LightGBM sees: positives, and subsampled negatives (see `failed_negatives`)."""
    train = df.filter(pl.col("part") == "train")
    if not opts.failed_negatives:
        train = train.filter((pl.col("label") == 1) | pl.col("failure_time").is_null())
    return _subsample(train, opts.negative_rate, opts.training_seed, ent, tm)


def _group_table(train: pl.DataFrame, spec: FeatureSpec, opts: TrainOptions) -> GroupTable | None:
    """The spec's group table: learned on the train part, or the champion's when fine-tuning (its trees were
    grown on the champion's values, so the same model must keep meaning the same numbers)."""
    if not spec.group_relative or spec.group is None:
        return None
    if opts.init_model is not None:
        meta = Path(opts.init_model).with_name("bundle.json")
        groups = json.loads(meta.read_text()).get("groups") if meta.is_file() else None
        if groups:
            return GroupTable.from_json(groups)
    return GroupTable.fit(train, spec.entity, spec.group, spec.group_relative)


def extra_negative_rows(extra: pl.DataFrame, spec: FeatureSpec, opts: TrainOptions) -> pl.DataFrame:
    """Healthy windows sampled from whole drive histories (`forecast.histories`), for training only: kept when
    their drive (the entity before `#`) is in the train part, so a calibration or test drive's history never
    trains the model."""
    base = extra[spec.entity].str.split("#").list.first()
    drives = base.unique(maintain_order=True)
    train_ents = drives.filter(entity_parts(drives, opts.fractions, opts.seed, opts.fold) == "train")
    rows = extra.filter(base.is_in(train_ents.implode()))
    if opts.valid_from:
        rows = rows.filter(pl.col(spec.time) < utc_time(opts.valid_from) - _horizon(opts))
    return _subsample(rows, opts.negative_rate, opts.training_seed, spec.entity, spec.time)


def utc_time(iso: str) -> pl.Expr:
    """An ISO date or time as a UTC microsecond literal, comparable with feature rows' time column."""
    return pl.lit(iso).str.to_datetime(time_unit="us").dt.replace_time_zone("UTC")


def _horizon(opts: TrainOptions) -> pl.Expr:
    return pl.duration(microseconds=int(opts.horizon_hours * 3600e6))


def _booster_params(opts: TrainOptions) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": opts.learning_rate,
        "num_leaves": opts.num_leaves,
        "min_data_in_leaf": opts.min_data_in_leaf,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "metric": "average_precision",
        "num_threads": opts.num_threads,
        "seed": opts.training_seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
        **opts.params,
    }


def _select_iteration(
    booster: lgb.Booster, xc: np.ndarray, calib: pl.DataFrame, ent: str, tm: str, opts: TrainOptions
) -> tuple[lgb.Booster, np.ndarray]:
    """Keep the number of trees that maximizes the calibration part's per-entity recall at the FAR budget.

    Early stopping watches a per-row metric; what operators get is per-entity recall at a false-alarm budget,
    and the two disagree late in boosting (more trees sharpen a few healthy entities' peaks). A fine-tuned
    model keeps all of its init_model's trees: only the trees boosted on top of them are candidates (cutting
    into the champion's trees left a 2-tree "fine-tuned" model of a 10-tree champion)."""
    total = booster.current_iteration()
    first = lgb.Booster(model_file=opts.init_model).current_iteration() if opts.init_model else 0
    if total - first <= 10:
        return booster, np.asarray(booster.predict(xc, raw_score=True, num_threads=opts.num_threads))
    best: tuple[float, int, np.ndarray] | None = None
    keys = calib.select(ent, tm, "failure_time")
    for k in sorted({first + int(np.rint(f * (total - first))) for f in np.linspace(0.1, 1.0, 10)}):
        m = np.asarray(booster.predict(xc, raw_score=True, num_iteration=k, num_threads=opts.num_threads))
        per = entity_maxima(keys.with_columns(pl.Series("score", m)), ent, tm, opts.horizon_hours)
        healthy = per.filter(~pl.col("failed"))["max_score"].to_numpy()
        failed = per.filter(pl.col("failed"))["max_score"].to_numpy()
        recall = float(np.mean(failed >= threshold_for_far(healthy, opts.far_budget))) if len(failed) else 0.0
        if best is None or recall > best[0]:
            best = (recall, k, m)
    assert best is not None
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best[1])), best[2]


def fit_platt(margin: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Platt scaling: a logistic regression of the label on the raw margin (monotone increasing when a > 0)."""
    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(margin.reshape(-1, 1), y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 0:  # a model no better than chance on calibration data must not invert its ranking
        a, b = 1e-6, float(np.log(max(y.mean(), 1e-9) / max(1 - y.mean(), 1e-9)))
    return {"a": a, "b": b}


def fit(
    labeled: pl.DataFrame,
    spec: FeatureSpec,
    opts: TrainOptions,
    data_hash: str = "",
    log: Callable[[str], None] = lambda _m: None,
    extra_negatives: pl.DataFrame | None = None,
) -> tuple[Bundle, pl.DataFrame]:
    """Train a bundle from labeled feature rows; returns it and the scored test rows (entity, time, score, ...).

    `labeled` comes from `labels.label_rows(build_features(...), ...)`: feature columns, `label`, `failure_time`.
    `extra_negatives` are feature rows of healthy windows from whole histories (see `extra_negative_rows`).
    """
    ent, tm = spec.entity, spec.time
    names = feature_names(spec)
    df = split_parts(labeled, ent, tm, opts)
    known = df.filter(pl.col("part") == "train")
    if opts.valid_from:  # failures after the cut are not known when training
        cut = utc_time(opts.valid_from)
        known = known.with_columns(pl.when(pl.col("failure_time") < cut).then(pl.col("failure_time")))
    groups = _group_table(known, spec, opts)
    del known
    if groups is not None:
        df = groups.apply(df)
        names += groups.feature_names()
    train = _training_rows(df, opts, ent, tm)
    if extra_negatives is not None and extra_negatives.height:
        extra = extra_negative_rows(extra_negatives, spec, opts)
        extra = groups.apply(extra) if groups is not None else extra
        extra = extra.with_columns(pl.lit(None).alias(c) for c in train.columns if c not in extra.columns)
        train = pl.concat([train, extra.select(train.columns)], how="vertical_relaxed")
    calib = df.filter(pl.col("part") == "calib")
    test = df.filter(pl.col("part") == "test")
    if train["label"].sum() == 0 or calib["label"].sum() == 0:
        raise ValueError("not enough failures to train: each of the train and calibration parts needs at least one")
    if train["label"].min() == 1:
        raise ValueError("no healthy rows to train on: the train part holds only rows within the horizon of a failure")
    log(f"train rows {train.height} ({int(train['label'].sum())} positive), calib {calib.height}, test {test.height}")

    params = _booster_params(opts)
    # Fine-tuning (init_model) makes LightGBM score the raw rows with the old model, so they must be kept;
    # it only happens on small local histories. Otherwise the raw matrix is freed once the Dataset is built.
    keep_raw = opts.init_model is not None
    x = train.select(names).to_numpy().astype(np.float32)
    weight = train["weight"].to_numpy() if "weight" in train.columns else None
    dtrain = lgb.Dataset(
        x, label=train["label"].to_numpy(), weight=weight, feature_name=names, params=params, free_raw_data=not keep_raw
    )
    if not keep_raw:
        dtrain.construct()
        del x
    xc = calib.select(names).to_numpy().astype(np.float32)
    dcalib = lgb.Dataset(xc, label=calib["label"].to_numpy(), reference=dtrain, free_raw_data=not keep_raw)
    if not keep_raw:
        dcalib.construct()
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=opts.rounds,
        valid_sets=[dcalib],
        valid_names=["calib"],
        init_model=opts.init_model,
        callbacks=[lgb.early_stopping(opts.early_stopping, verbose=False)],
        keep_training_booster=False,
    )
    del dtrain, dcalib
    booster, margin_c = _select_iteration(booster, xc, calib, ent, tm, opts)
    log(f"kept {booster.num_trees()} trees (best per-entity recall on the calibration part)")
    del xc
    calibration = fit_platt(margin_c, calib["label"].to_numpy())
    bundle = Bundle(
        booster=booster,
        kind=spec.kind,
        features=names,
        threshold=1.0,
        horizon_hours=opts.horizon_hours,
        calibration=calibration,
        version=new_version(),
        training_window={"start": str(df[tm].min()), "end": str(df[tm].max())},
        data_hash=data_hash,
        groups=groups,
    )
    calib_scored = calib.select(ent, tm, "failure_time").with_columns(
        pl.Series("score", bundle.calibrate(margin_c))
    )
    per = entity_maxima(calib_scored, ent, tm, opts.horizon_hours)
    bundle.threshold = threshold_for_far(
        per.filter(~pl.col("failed"))["max_score"].to_numpy(),
        opts.far_budget * opts.far_margin,
        per.filter(pl.col("failed"))["max_score"].to_numpy(),
    )
    test_scored = test.select(ent, tm, "failure_time", *names).with_columns(pl.Series("score", bundle.predict(test)))
    bundle.metrics = {
        "far_budget": opts.far_budget,
        "calib": evaluate(calib_scored, ent, tm, opts.horizon_hours, bundle.threshold),
        "test": evaluate(test_scored, ent, tm, opts.horizon_hours, bundle.threshold),
        "rows": {"train": train.height, "calib": calib.height, "test": test.height},
        "trees": booster.num_trees(),
        "split": {"fractions": list(opts.fractions), "seed": opts.seed, "valid_from": opts.valid_from},
        "model_seed": opts.training_seed,
    }
    return bundle, test_scored


def cross_validate(
    labeled: pl.DataFrame,
    spec: FeatureSpec,
    opts: TrainOptions,
    k: int,
    extra_negatives: pl.DataFrame | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> list[tuple[Bundle, pl.DataFrame]]:
    """k fits in which every entity is in the test part once (`TrainOptions.fold`): one held-out split of a few
    hundred failed drives moves recall by +-0.02-0.05, the k folds together use every failed drive."""
    out = []
    for i in range(k):
        log(f"fold {i + 1}/{k}")
        out.append(fit(labeled, spec, replace(opts, fold=(i, k)), log=log, extra_negatives=extra_negatives))
    return out


def plain_baseline(labeled: pl.DataFrame, spec: FeatureSpec, opts: TrainOptions, raw: Sequence[str]) -> dict[str, Any]:
    """Reference: LightGBM on raw values plus 7-step deltas only; same split, same training rows, uncalibrated,
    evaluated on the test part."""
    ent, tm = spec.entity, spec.time
    cols = [f"{c}__last" for c in raw] + [f"{c}__growth_7" for c in raw if f"{c}__growth_7" in labeled.columns]
    cols = [c for c in cols if c in labeled.columns]
    df = split_parts(labeled, ent, tm, opts)
    train = _training_rows(df, opts, ent, tm)
    calib, test = df.filter(pl.col("part") == "calib"), df.filter(pl.col("part") == "test")
    dtrain = lgb.Dataset(train.select(cols).to_numpy().astype(np.float32), label=train["label"].to_numpy())
    dcalib = lgb.Dataset(calib.select(cols).to_numpy().astype(np.float32), label=calib["label"].to_numpy(),
                         reference=dtrain)
    booster = lgb.train(_booster_params(opts), dtrain, num_boost_round=opts.rounds, valid_sets=[dcalib],
                        callbacks=[lgb.early_stopping(opts.early_stopping, verbose=False)])
    score = booster.predict(test.select(cols).to_numpy().astype(np.float32), num_threads=opts.num_threads)
    scored = test.select(ent, tm, "failure_time").with_columns(pl.Series("score", score))
    return {"features": cols, **evaluate(scored, ent, tm, opts.horizon_hours)}


def _child(target: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    try:
        conn.send(("ok", target(*args)))
    except BaseException as exc:  # reported to the parent, which re-raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def train_in_subprocess(target: Callable[..., Any], *args: Any) -> Any:
    """Run `target(*args)` in a spawned process and return its (picklable) result, e.g. a bundle path.

    Spawn, not fork: the daemon has threads and an event loop, which a fork would copy in a broken state.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(target, args, child), daemon=True)
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"training process died (exit code {proc.exitcode})") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"training failed: {value}")
    return value


def file_hash(paths: Sequence[Path]) -> str:
    """sha256 over the training files' bytes, in the order given: the data_hash a bundle records."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()
