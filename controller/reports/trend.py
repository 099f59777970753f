"""The nightly trend: median latency of each (model, recipe, device, backend) over past nights."""
from __future__ import annotations

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from edgefarm.controller.reports.plots import PLOT_STYLE, Plot, figure_svg

TREND_COLUMNS = ("run_id", "night", "series", "latency_p50_ms", "verdict")


def trend_plot(history: pd.DataFrame) -> Plot:
    """history: one row per (night, series) with TREND_COLUMNS; nights in time order."""
    missing = [c for c in TREND_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(f"trend history lacks column(s): {', '.join(missing)}")
    with matplotlib.rc_context(PLOT_STYLE):
        fig = Figure(figsize=(10, 3.8))
        ax = fig.add_subplot()
        nights = list(dict.fromkeys(history["night"]))
        for series, rows in history.groupby("series", sort=True):
            x = [nights.index(n) for n in rows["night"]]
            ax.plot(x, rows["latency_p50_ms"], marker="o", label=series)
        ax.set_xticks(range(len(nights)), nights, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("p50 latency (ms)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        svg = figure_svg(fig, "fig-trend")
    caption = (f"Median latency per benchmark over the last {len(nights)} night(s), oldest first; "
               "a regression shows as a step up.")
    return Plot("fig-trend", svg, caption)
