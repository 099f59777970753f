"""The nightly trend: median latency of each benchmark series over past nights, change points marked."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from edgefarm.controller.nightly.changepoints import ChangePoint
from edgefarm.controller.reports.plots import PLOT_STYLE, Plot, figure_svg

TREND_COLUMNS = ("run_id", "night", "series", "latency_p50_ms", "verdict")


def trend_plot(history: pd.DataFrame, change_points: Sequence[ChangePoint] = ()) -> Plot:
    """history: one row per (night, series) with TREND_COLUMNS; nights in time order. Each change
    point is a dashed line at its first night at the new level, labelled with its step."""
    missing = [c for c in TREND_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(f"trend history lacks column(s): {', '.join(missing)}")
    with matplotlib.rc_context(PLOT_STYLE):
        fig = Figure(figsize=(10, 3.8))
        ax = fig.add_subplot()
        nights = list(dict.fromkeys(history["night"]))
        night_of = dict(zip(history["run_id"], history["night"], strict=False))
        colors = {}
        for series, rows in history.groupby("series", sort=True):
            x = [nights.index(n) for n in rows["night"]]
            (line,) = ax.plot(x, rows["latency_p50_ms"], marker="o", label=series)
            colors[series] = line.get_color()
        for point in change_points:
            if point.run_id in night_of and point.series in colors:
                _mark(ax, nights.index(night_of[point.run_id]), point, colors[point.series])
        ax.set_xticks(range(len(nights)), nights, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("p50 latency (ms)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        svg = figure_svg(fig, "fig-trend")
    marked = f"; {len(change_points)} change point(s) dashed, with their step" if change_points else ""
    caption = (f"Median latency per benchmark over the last {len(nights)} night(s), oldest first; "
               f"a regression shows as a step up{marked}.")
    return Plot("fig-trend", svg, caption)


def _mark(ax, x: float, point: ChangePoint, color: str) -> None:  # noqa: ANN001 - a matplotlib Axes
    ax.axvline(x - 0.5, color=color, linestyle="--", linewidth=1.2)
    ax.annotate(f"{point.step:+.1%}", (x - 0.5, point.after_ms), textcoords="offset points", xytext=(4, 6),
                fontsize=8, color=color)
