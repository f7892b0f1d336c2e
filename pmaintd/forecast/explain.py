"""Why a forecast says what it says: top feature contributions from LightGBM's `pred_contrib`.

Contributions are in the model's raw margin (log-odds) units; positive ones push towards failure. Each reason
carries the feature's value, so an operator sees e.g. `smart_197_raw__growth_7 = 16 (+1.9)`.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from pmaintd.forecast.bundle import Bundle


def top_contributions(bundle: Bundle, frame: pl.DataFrame, n: int = 5) -> list[list[dict[str, object]]]:
    """For each feature row, the n features with the largest |contribution|, largest first."""
    if frame.height == 0:
        return []
    x = bundle.matrix(frame)
    contrib = np.asarray(bundle.booster.predict(x, pred_contrib=True, num_threads=2))[:, :-1]  # last column: bias
    out: list[list[dict[str, object]]] = []
    for i in range(x.shape[0]):
        order = np.argsort(-np.abs(contrib[i]))[:n]
        reasons = []
        for j in order:
            if contrib[i, j] == 0:
                break
            v = float(x[i, j])
            reasons.append(
                {
                    "feature": bundle.features[j],
                    "value": None if math.isnan(v) else v,
                    "contribution": round(float(contrib[i, j]), 4),
                }
            )
        out.append(reasons)
    return out
