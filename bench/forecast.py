"""Forecasting throughput: rows/s for feature building, training and scoring at 1M and 3M drive-days.

Data: ../shared/data/backblaze (the 2013-2016 last-120-day histories, 2.7M drive-days, plus the 2013 daily file).
To reach 3M rows the histories are replicated with distinct serial numbers (suffix `~rN`), which this prints;
1M is the first 1M rows of drives in serial order. Each phase runs in a fresh process so its peak RSS is its
own. Figures, not pass/fail. Run: .venv/bin/python bench/forecast.py [--sizes 1000000 3000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("PMAINTD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HDS = DATA / "backblaze" / "backblaze_hds_daily_last120.csv.gz"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_input(rows: int, out: Path) -> str:
    """A Backblaze-format parquet-free CSV of exactly `rows` drive-days, whole drives first."""
    import polars as pl

    base = pl.read_csv(HDS, infer_schema_length=0).sort("serial_number", "date")
    parts, n, rep = [], 0, 0
    while n < rows:
        take = base.head(rows - n) if rows - n < base.height else base
        parts.append(take.with_columns(pl.col("serial_number") + (f"~r{rep}" if rep else "")))
        n += take.height
        rep += 1
    pl.concat(parts).write_csv(out)
    return f"{rows} rows = {'first rows of' if rep == 1 else f'{rep} copies (distinct serials) of'} {HDS.name}"


def phase(name: str, path: str, model_dir: str) -> dict[str, float]:
    """One phase in this process; returns seconds, rows and peak RSS."""
    import polars as pl

    from pmaintd.forecast import backblaze
    from pmaintd.forecast.bundle import load
    from pmaintd.forecast.disk import labeled_from_frame
    from pmaintd.forecast.features import DISK_SPEC, build_features
    from pmaintd.forecast.train import TrainOptions, fit

    raw = backblaze.read_backblaze([Path(path)])
    t = time.perf_counter()
    if name == "features":
        out = build_features(raw, DISK_SPEC)
        rows = out.height
    elif name == "train":
        labeled = labeled_from_frame(raw, 168)
        t = time.perf_counter()
        opts = TrainOptions(rounds=100, early_stopping=100, negative_rate=0.2)
        bundle, _ = fit(labeled, DISK_SPEC, opts)
        rows = bundle.metrics["rows"]["train"]
    elif name == "score":
        from pmaintd.forecast.backtest import score_frame

        scores = score_frame(raw, load(Path(model_dir)))
        rows = scores.height
    else:
        raise ValueError(name)
    secs = time.perf_counter() - t
    del pl
    return {"seconds": secs, "rows": rows, "rows_per_s": rows / secs, "peak_rss_mb": _peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    ap.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "models" / "disk"))
    ap.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(*args.phase[:2], args.phase[2])))
        return
    if not HDS.is_file():
        sys.exit(f"shared data absent: {HDS}")
    print(f"cores {os.cpu_count()}, LightGBM num_threads=2, 100 boosting rounds for the training phase")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"in_{size}.csv"
            print(make_input(size, path))
            for name in ("features", "train", "score"):
                res = subprocess.run([sys.executable, __file__, "--phase", name, str(path), args.model],
                                     capture_output=True, text=True, check=True)
                r = json.loads(res.stdout.strip().splitlines()[-1])
                what = "train rows (negatives subsampled to 20%)" if name == "train" else "drive-days"
                print(f"  {size:>9,} {name:<8} {r['rows']:>9,} {what}: {r['seconds']:7.1f} s, "
                      f"{r['rows_per_s']:>10,.0f} rows/s, peak RSS {r['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
