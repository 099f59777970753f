"""Pareto front over two metrics: the rows no other row beats on both at once."""
from __future__ import annotations

import pandas as pd


def pareto_front(df: pd.DataFrame, x: str = "latency_p50_ms", y: str = "accuracy") -> pd.DataFrame:
    """The non-dominated rows of `df`, where a lower `x` and a higher `y` are better.

    A row is dominated when another is at least as good on both metrics and strictly better on
    one, so exact ties all stay on the front. Rows with NaN in `x` or `y` cannot be ranked and
    are left out. The front comes back sorted by `x` (then best `y` first), original index kept.
    """
    missing = [name for name in (x, y) if name not in df.columns]
    if missing:
        raise ValueError(f"pareto_front needs column(s) {', '.join(missing)}")
    ranked = df.dropna(subset=[x, y])
    xs = ranked[x].to_numpy(dtype=float)
    ys = ranked[y].to_numpy(dtype=float)
    # [i, j] is True when row j dominates row i.
    no_worse = (xs[None, :] <= xs[:, None]) & (ys[None, :] >= ys[:, None])
    strictly_better = (xs[None, :] < xs[:, None]) | (ys[None, :] > ys[:, None])
    dominated = (no_worse & strictly_better).any(axis=1)
    front = ranked[~dominated]
    return front.sort_values([x, y], ascending=[True, False], kind="stable")
