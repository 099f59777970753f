"""The report's plots, drawn with matplotlib and returned as SVG text to inline in the page.

Latency per variant and device, accuracy against latency with each device's Pareto front, and
artifact size per variant. Colours follow the measurement series (device, plus backend or run
where needed) and stay the same in every plot.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from html import escape

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from edgefarm.controller.reports.cells import binary_size
from edgefarm.controller.reports.frame import (
    series_labels,
    sort_results,
    throttled_mask,
    variant_labels,
    variant_order,
)
from edgefarm.controller.reports.pareto import pareto_front

# Controllers and CI are headless. Figures are built as Figure objects, never through pyplot, so
# reports do not pile up in pyplot's global figure registry.
matplotlib.use("Agg")

LATENCY_FIGURE_ID = "fig-latency"
ACCURACY_FIGURE_ID = "fig-accuracy-latency"
SIZE_FIGURE_ID = "fig-size"
# Past this max/min ratio a linear axis squashes the fast devices' bars to nothing.
LOG_SCALE_SPREAD = 30.0
INK = "#1f2933"
THROTTLED_HATCH = "////"
_GROUP_WIDTH = 0.8
_MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_MIN_SLOTS = 4
_LEGEND_ROW = 9  # legend entries that fit in one row above an 11-inch plot
_LEGEND_COLUMN = 18  # legend entries per column beside a plot
_LABEL_FONT_SIZE = 7.5
# Where a point's label may go, in points from the point: right-above first, then the other corners.
_LABEL_OFFSETS = ((6, 3, "left"), (6, -11, "left"), (-6, 3, "right"), (-6, -11, "right"))
_MAX_LISTED_UNRATED = 5
PLOT_STYLE = {
    "svg.hashsalt": "edgefarm-report",  # stable element ids, so the same results give the same page
    "svg.fonttype": "path",  # text as outlines: the page needs no fonts from anywhere
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "axes.grid": True,
    "grid.color": "#d9dee3",
    "grid.linewidth": 0.6,
}
# Matplotlib's default SVG metadata names matplotlib.org and a Dublin Core URI; the page wants neither.
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
_ROOT_SIZE = re.compile(r'\s(?:width|height)="[\d.]+pt"')


@dataclass(frozen=True)
class Plot:
    figure_id: str
    svg: str
    caption: str


def figure_html(plot: Plot) -> str:
    """A plot as the page's <figure>: its SVG inline, its caption under it."""
    return (f'<figure id="{plot.figure_id}">\n{plot.svg}\n'
            f"<figcaption>{escape(plot.caption)}</figcaption>\n</figure>")


def report_plots(df: pd.DataFrame) -> list[Plot]:
    """The three report plots for a validated, non-empty results frame."""
    rows = _plot_rows(df)
    with matplotlib.rc_context(PLOT_STYLE):
        return [latency_plot(rows), accuracy_plot(rows), size_plot(rows)]


def _plot_rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = sort_results(df)
    series = series_labels(rows)
    models = list(dict.fromkeys(rows["model"]))
    marker = {model: _MODEL_MARKERS[i % len(_MODEL_MARKERS)] for i, model in enumerate(models)}
    return rows.assign(category=variant_labels(rows, "\n"), series=series, color=_colors(series),
                       marker=rows["model"].map(marker), throttled=throttled_mask(rows))


# ---- latency ---------------------------------------------------------------------------------

def latency_plot(rows: pd.DataFrame) -> Plot:
    """Bars of p50 per variant, one per series, with p90 (dash) and p99 (diamond) on a whisker."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.add_subplot()
    x, width = _grouped_positions(rows, rows["series"])
    bars = ax.bar(x, rows["latency_p50_ms"], width=width * 0.9, color=rows["color"])
    _hatch(bars, rows["throttled"])
    ax.vlines(x, rows["latency_p50_ms"], rows["latency_p99_ms"], color=INK, linewidth=0.8)
    ax.scatter(x, rows["latency_p90_ms"], marker="_", s=90, linewidths=1.6, color=INK, zorder=3)
    ax.scatter(x, rows["latency_p99_ms"], marker="D", s=12, color=INK, zorder=3)
    _category_axis(ax, rows)
    ax.set_ylabel("latency (ms)")
    log_scale = _spread(rows["latency_p50_ms"], rows["latency_p99_ms"]) > LOG_SCALE_SPREAD
    if log_scale:
        _log_axis(ax, "y")
    handles = _latency_legend(rows)
    _legend(ax, handles, above=len(handles) <= _LEGEND_ROW)
    return Plot(LATENCY_FIGURE_ID, figure_svg(fig, LATENCY_FIGURE_ID), _latency_caption(rows, log_scale))


def _latency_legend(rows: pd.DataFrame) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = _legend_patches(rows)
    handles.append(Line2D([], [], marker="_", linestyle="", markersize=10, markeredgewidth=1.6,
                          color=INK, label="p90"))
    handles.append(Line2D([], [], marker="D", linestyle="", markersize=3.5, color=INK, label="p99"))
    if rows["throttled"].any():
        handles.append(Patch(facecolor="white", edgecolor=INK, hatch=THROTTLED_HATCH, label="throttled"))
    return handles


def _latency_caption(rows: pd.DataFrame, log_scale: bool) -> str:
    caption = ("Latency per variant and device. Bars are the median (p50); on each whisker the dash "
               "marks p90 and the diamond p99.")
    if rows["throttled"].any():
        caption += " Hatched bars were measured while the board was throttling."
    if log_scale:
        caption += f" Log scale: latencies span more than {LOG_SCALE_SPREAD:.0f}×."
    return caption


# ---- accuracy vs latency ---------------------------------------------------------------------

def accuracy_plot(rows: pd.DataFrame) -> Plot:
    """Accuracy against p50 latency, one colour per series, each series' Pareto front ringed."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax = fig.add_subplot()
    rated = rows.dropna(subset=["accuracy", "latency_p50_ms"])
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel("accuracy (%)")
    log_scale = _spread(rated["latency_p50_ms"], rated["latency_p50_ms"]) > LOG_SCALE_SPREAD
    if rated.empty:
        ax.text(0.5, 0.5, "no result has accuracy data", transform=ax.transAxes,
                ha="center", va="center", color=INK)
        ax.set(xticks=[], yticks=[])
    else:
        for _, group in rated.groupby("series", sort=False):
            _scatter_series(ax, group)
        ax.margins(x=0.06, y=0.12)  # room for the rings and labels of points at the extremes
        if log_scale:
            _log_axis(ax, "x")
        _legend(ax, _accuracy_legend(rated), above=False)
        _label_points(ax, rated)  # last: it places labels by where the finished layout puts the points
    caption = _accuracy_caption(rows.drop(rated.index), log_scale)
    return Plot(ACCURACY_FIGURE_ID, figure_svg(fig, ACCURACY_FIGURE_ID), caption)


def _scatter_series(ax: Axes, group: pd.DataFrame) -> None:
    """One series' points (marker shape per model) and its Pareto front: ringed, joined by a staircase."""
    color = group["color"].iloc[0]
    for marker, points in group.groupby("marker", sort=False):
        ax.scatter(points["latency_p50_ms"], points["accuracy"] * 100, s=28, marker=marker,
                   color=color, zorder=3)
    front = pareto_front(group)
    ax.step(front["latency_p50_ms"], front["accuracy"] * 100, where="post",
            color=color, linestyle="--", linewidth=1, zorder=2)
    ax.scatter(front["latency_p50_ms"], front["accuracy"] * 100, s=130, facecolors="none",
               edgecolors=color, linewidths=1.3, zorder=4)


def _label_points(ax: Axes, rated: pd.DataFrame) -> None:
    """Name each point's variant, beside it where the label overlaps the fewest other labels and points."""
    ax.figure.draw_without_rendering()  # settle limits and layout so display positions are final
    rated = rated.drop_duplicates(["latency_p50_ms", "accuracy", "variant"])  # one label per spot
    data = rated[["latency_p50_ms", "accuracy"]].to_numpy(dtype=float) * [1, 100]
    points = ax.transData.transform(data) * 72 / ax.figure.dpi  # in points, the unit of label offsets
    taken = [(x - 7, y - 7, x + 7, y + 7) for x, y in points]  # the ringed markers
    for (x, y), anchor, variant in zip(points, data, rated["variant"], strict=True):
        width = len(variant) * _LABEL_FONT_SIZE * 0.62 + 3  # DejaVu Sans averages ~0.6 em a character
        boxes = [_label_box(x, y, width, offset) for offset in _LABEL_OFFSETS]
        crowding = [sum(_overlaps(box, other) for other in taken) for box in boxes]
        choice = crowding.index(min(crowding))
        taken.append(boxes[choice])
        dx, dy, align = _LABEL_OFFSETS[choice]
        ax.annotate(variant, tuple(anchor), xytext=(dx, dy), textcoords="offset points",
                    ha=align, va="bottom", fontsize=_LABEL_FONT_SIZE, color=INK)


def _label_box(x: float, y: float, width: float, offset: tuple[float, float, str]) -> tuple[float, ...]:
    dx, dy, align = offset
    left = x + dx if align == "left" else x + dx - width
    return (left, y + dy, left + width, y + dy + _LABEL_FONT_SIZE)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _accuracy_legend(rated: pd.DataFrame) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = _legend_patches(rated)
    if rated["model"].nunique() > 1:
        shown = rated.drop_duplicates("model")
        handles += [Line2D([], [], marker=marker, linestyle="", color=INK, label=model)
                    for model, marker in zip(shown["model"], shown["marker"], strict=True)]
    handles.append(Line2D([], [], marker="o", markersize=9, markerfacecolor="none", color="#6b7785",
                          linestyle="--", linewidth=1, label="Pareto front"))
    return handles


def _accuracy_caption(unrated: pd.DataFrame, log_scale: bool) -> str:
    caption = ("Accuracy against median latency: up and to the left is better. Ringed points joined "
               "by the dashed staircase are each device's Pareto front (no other variant on that "
               "device is both faster and more accurate).")
    if log_scale:
        caption += " Latency on a log scale."
    if not unrated.empty:
        names = [f"{row.model} {row.variant} on {row.series}" for row in unrated.itertuples()]
        listed = ", ".join(names[:_MAX_LISTED_UNRATED])
        more = f" and {len(names) - _MAX_LISTED_UNRATED} more" if len(names) > _MAX_LISTED_UNRATED else ""
        caption += (f" Not shown: {len(names)} result(s) without accuracy data ({listed}{more}); "
                    "they are left out of the Pareto front.")
    return caption


# ---- size ------------------------------------------------------------------------------------

def size_plot(rows: pd.DataFrame) -> Plot:
    """Artifact size per variant; one bar per backend only where the backends' artifacts differ."""
    sizes = _distinct_sizes(rows)
    scale, unit = (2**20, "MiB") if sizes["size_bytes"].max() >= 2**20 else (2**10, "KiB")
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax = fig.add_subplot()
    x, width = _grouped_positions(sizes, sizes["series"])
    bars = ax.bar(x, sizes["size_bytes"] / scale, width=width * 0.9, color=sizes["color"])
    by_backend = sizes["series"].nunique() > 1
    # Side-by-side bars are too narrow for a horizontal label.
    ax.bar_label(bars, labels=[binary_size(size) for size in sizes["size_bytes"]], padding=2,
                 fontsize=7.5, rotation=90 if by_backend else 0)
    ax.margins(y=0.25 if by_backend else 0.12)
    _category_axis(ax, rows)
    ax.set_ylabel(f"size ({unit})")
    if by_backend:
        _legend(ax, _legend_patches(sizes), above=False)
    caption = "Artifact size per variant" + (", one bar per backend whose artifact differs." if by_backend
                                             else " (the same artifact runs on every device).")
    return Plot(SIZE_FIGURE_ID, figure_svg(fig, SIZE_FIGURE_ID), caption)


def _distinct_sizes(rows: pd.DataFrame) -> pd.DataFrame:
    distinct = rows.drop_duplicates(["model", "variant", "size_bytes"])
    sizes = rows.drop_duplicates(["model", "variant", "backend", "size_bytes"])
    if distinct.duplicated(["model", "variant"]).any():
        series = sizes["backend"].astype(str)
    else:
        series = pd.Series("artifact", index=sizes.index)
    sizes = sizes.assign(series=series, color=_colors(series))
    return sizes.drop_duplicates(["model", "variant", "series"])


# ---- shared layout ---------------------------------------------------------------------------

def _categories(rows: pd.DataFrame) -> list[str]:
    """Category labels ordered by model, then recipe order."""
    rank = {name: position for position, name in enumerate(variant_order(rows["variant"]))}
    by_rank = lambda column: column.map(rank) if column.name == "variant" else column
    ordered = rows.sort_values(["model", "variant"], key=by_rank, kind="stable")
    return list(dict.fromkeys(ordered["category"]))


def _grouped_positions(rows: pd.DataFrame, series: pd.Series) -> tuple[np.ndarray, float]:
    """x of each row's bar: its category's slot, shifted within the group by its series."""
    category_index = rows["category"].map({name: i for i, name in enumerate(_categories(rows))})
    names = list(dict.fromkeys(series))
    width = _GROUP_WIDTH / len(names)
    offset = (series.map({name: i for i, name in enumerate(names)}) - (len(names) - 1) / 2) * width
    return (category_index + offset).to_numpy(dtype=float), width


def _category_axis(ax: Axes, rows: pd.DataFrame) -> None:
    categories = _categories(rows)
    ax.set_xticks(range(len(categories)), categories)
    ax.grid(False, axis="x")
    # At least _MIN_SLOTS category widths, so one or two variants do not become slabs.
    half = max(len(categories), _MIN_SLOTS) / 2
    middle = (len(categories) - 1) / 2
    ax.set_xlim(middle - half, middle + half)


def _legend(ax: Axes, handles: list[Patch | Line2D], above: bool) -> None:
    """A short legend in one row above the axes; a long one in columns to their right."""
    if above:
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=len(handles),
                  frameon=False, fontsize=8)
    else:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1),
                  ncols=math.ceil(len(handles) / _LEGEND_COLUMN), frameon=False, fontsize=8)


def _colors(series: pd.Series) -> pd.Series:
    """One colour per distinct series name, in order of first appearance."""
    names = list(dict.fromkeys(series))
    colormap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    palette = {name: to_hex(colormap(i % colormap.N)) for i, name in enumerate(names)}
    return series.map(palette)


def _legend_patches(rows: pd.DataFrame) -> list[Patch | Line2D]:
    shown = rows.drop_duplicates("series")
    return [Patch(color=color, label=name)
            for name, color in zip(shown["series"], shown["color"], strict=True)]


def _hatch(bars: BarContainer, throttled: pd.Series) -> None:
    for bar, is_throttled in zip(bars, throttled, strict=True):
        if is_throttled:
            bar.set_hatch(THROTTLED_HATCH)
            bar.set_edgecolor(INK)


def _log_axis(ax: Axes, which: str) -> None:
    """Log scale with plain-number ticks at 1-2-5 steps: engineers read "20", not 2×10¹."""
    if which == "y":
        ax.set_yscale("log")
    else:
        ax.set_xscale("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _spread(low: pd.Series, high: pd.Series) -> float:
    """max(high) / min(positive low); 1 when there is nothing to compare."""
    positive = low[low > 0]
    if positive.empty or high.isna().all():
        return 1.0
    return float(high.max() / positive.min())


# ---- SVG -------------------------------------------------------------------------------------

def figure_svg(fig: Figure, figure_id: str) -> str:
    """`fig` as an <svg> element ready to inline in HTML, its element ids scoped by `figure_id`."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata=_NO_METADATA)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # the XML prolog and DOCTYPE are not allowed inside HTML
    svg = _ROOT_SIZE.sub("", svg, count=2)  # the root's size in pt: CSS sizes it from the viewBox
    return _scope_ids(svg, figure_id)


def _scope_ids(svg: str, prefix: str) -> str:
    # Every plot reuses ids like "axes_1" and glyph ids; in one HTML document they must not clash.
    svg = re.sub(r'\bid="', f'id="{prefix}-', svg)
    return svg.replace('href="#', f'href="#{prefix}-').replace("url(#", f"url(#{prefix}-")
