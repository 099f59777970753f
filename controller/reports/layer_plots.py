"""Per-layer plots, drawn like the report's others (plots.py): one per profiled result, and one per diff.

A result's plot puts each layer's median as a bar in execution order, coloured by op family (the same
colour for a family in every plot of a page), glue hatched, with the running sum on a second axis
against the headline p50: where the line ends beside the dashed p50 is the coverage.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from edgefarm.controller.reports.plots import INK, PLOT_STYLE, Plot, figure_svg

GLUE_HATCH = "xxxx"
HEADLINE = "#b45309"         # the report's warning ink: the one line measured without the profiler
LABELLED_LAYERS = 3          # the slowest layers get their name beside the bar
_NAME_CHARS = 28


def family_colors(families: pd.Series) -> dict[str, str]:
    """One colour per op family, in order of first appearance, shared by every plot of a page."""
    names = list(dict.fromkeys(families.astype(str)))
    colormap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: to_hex(colormap(i % colormap.N)) for i, name in enumerate(names)}


def layer_plot(layers: pd.DataFrame, e2e_p50_us: float, label: str, figure_id: str,
               colors: dict[str, str]) -> Plot:
    """Bars of each layer's median µs in execution order; the running sum against the headline p50."""
    timed = layers.dropna(subset=["median_us"]).sort_values("position")
    with matplotlib.rc_context(PLOT_STYLE):
        fig = Figure(figsize=(11, 3.4), layout="constrained")
        ax = fig.add_subplot()
        x = np.arange(len(timed))
        bars = ax.bar(x, timed["median_us"], width=0.85, color=timed["op_family"].astype(str).map(colors))
        for bar, is_glue in zip(bars, timed["is_glue"].astype(bool), strict=True):
            if is_glue:
                bar.set_hatch(GLUE_HATCH)
                bar.set_edgecolor(INK)
        _label_slowest(ax, timed, x)
        ax.set(xlabel="layer, in execution order", ylabel="median µs (profiled pass)", xlim=(-1, max(len(x), 8)))
        _running_sum(ax, timed, x, e2e_p50_us)
        _legend(ax, timed, colors)
        svg = figure_svg(fig, figure_id)
    total = timed["median_us"].sum()
    caption = (f"{label}: {len(timed)} layers, Σ median {total:,.1f} µs against a headline p50 of "
               f"{e2e_p50_us:,.1f} µs. Bars: each layer's median in the profiled pass, coloured by op family, "
               "glue hatched; line: running sum (right axis); dashed: the headline p50.")
    return Plot(figure_id, svg, caption)


def _label_slowest(ax: Axes, timed: pd.DataFrame, x: np.ndarray) -> None:
    order = np.argsort(-timed["median_us"].to_numpy(dtype=float), kind="stable")[:LABELLED_LAYERS]
    for i in order:
        name = str(timed["name"].iloc[i])
        short = name if len(name) <= _NAME_CHARS else "…" + name[-_NAME_CHARS:]
        ax.annotate(short, (x[i], timed["median_us"].iloc[i]), xytext=(2, 2), textcoords="offset points",
                    fontsize=7, color=INK, rotation=20)
    ax.margins(y=0.2)


def _running_sum(ax: Axes, timed: pd.DataFrame, x: np.ndarray, e2e_p50_us: float) -> None:
    right = ax.twinx()
    right.step(x, timed["median_us"].cumsum(), where="mid", color=INK, linewidth=1.1)
    right.axhline(e2e_p50_us, color=HEADLINE, linestyle="--", linewidth=1.1)
    right.set_ylabel("running sum µs")
    right.set_ylim(0, max(timed["median_us"].sum(), e2e_p50_us) * 1.08)
    right.grid(False)
    right.spines["right"].set_visible(True)


def _legend(ax: Axes, timed: pd.DataFrame, colors: dict[str, str]) -> None:
    families = list(dict.fromkeys(timed["op_family"].astype(str)))
    handles: list[Patch | Line2D] = [Patch(color=colors[f], label=f) for f in families]
    if timed["is_glue"].astype(bool).any():
        handles.append(Patch(facecolor="white", edgecolor=INK, hatch=GLUE_HATCH, label="glue"))
    handles += [Line2D([], [], color=INK, linewidth=1.1, label="running sum"),
                Line2D([], [], color=HEADLINE, linestyle="--", linewidth=1.1, label="headline p50")]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=min(len(handles), 8),
              frameon=False, fontsize=8)


def diff_plot(frame: pd.DataFrame, label_a: str, label_b: str, figure_id: str) -> Plot:
    """Time in A and in B per aligned group, in A's execution order (a diff's `frame()`)."""
    with matplotlib.rc_context(PLOT_STYLE):
        fig = Figure(figsize=(11, 3.6), layout="constrained")
        ax = fig.add_subplot()
        x = np.arange(len(frame))
        ax.bar(x - 0.2, frame["time_a_us"].fillna(0.0), width=0.4, color="#4c78a8", label=f"A: {label_a}")
        ax.bar(x + 0.2, frame["time_b_us"].fillna(0.0), width=0.4, color="#f58518", label=f"B: {label_b}")
        unaligned = frame["match"].isin(["only-a", "only-b"]).to_numpy()
        if unaligned.any():
            ax.scatter(x[unaligned], np.zeros(unaligned.sum()), marker="x", color=INK, zorder=3,
                       label="only in one side")
        ax.set(xlabel="aligned group, in A's execution order", ylabel="median µs (profiled pass)",
               xlim=(-1, max(len(x), 8)))
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("only"))   # A, B, then the cross
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower left",
                  bbox_to_anchor=(0, 1.01), ncols=3, frameon=False, fontsize=8)
        svg = figure_svg(fig, figure_id)
    caption = ("Time per aligned group in A and B (a group is the layers of each side that came from the same "
               "source nodes, or that match on op family and output shape); a cross marks a layer only one "
               "side has.")
    return Plot(figure_id, svg, caption)
