"""The tune's HTML page, in the report's style: per board the measured candidates (latency vs quality,
marker area by size) with the Pareto front drawn through them and the recommendation circled, then the
deployment card, the front, the per-layer decisions of the hardware-aware mixed-precision variant and
the host checks. Reads the Tuning record only; never measures."""
from __future__ import annotations

import zlib
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from edgefarm.controller.reports.html_report import html_page, write_page
from edgefarm.controller.reports.plots import PLOT_STYLE, Plot, figure_html, figure_svg
from edgefarm.controller.tuning import front as fronts

if TYPE_CHECKING:
    from edgefarm.api.tuning import Tuning

matplotlib.use("Agg")
FRONT_FIGURE_ID = "fig-tune-front"


def write_tune_page(tuning: Tuning, path: Path) -> Path:
    title = f"edgefarm tune {tuning.run_id}"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f'<header>\n<h1>{escape(title)}</h1>\n<p class="meta">objective {escape(tuning.objective)} · '
              f"budget {tuning.max_drop:g} points · {tuning.jobs} board job(s) · generated {generated}</p>\n</header>")
    return write_page(html_page(title, header, tune_body(tuning)), path)


def tune_body(tuning: Tuning) -> str:
    parts = [f"<p>{escape(tuning.message)}</p>"]
    for device, rows in (tuning.frame.groupby("device", sort=False) if not tuning.frame.empty else ()):
        card = next((c for c in tuning.cards if c.device == device), None)
        parts.append(f"<h2>{escape(str(device))}</h2>")
        parts.append(figure_html(front_plot(rows, card.job_id if card else None, str(device))))
        parts.append(_card_html(card) if card else "<p>No candidate within the budget on this board.</p>")
        front = fronts.pareto(fronts.confirmed(rows))
        parts.append("<h3>Pareto front</h3>" + _table(front, ("candidate", "latency_p50_ms", "latency_p99_ms",
                                                               "quality", "drop_points", "size_bytes", "job_id")))
    if not tuning.decisions.empty:
        parts.append("<h2>Hardware-aware mixed precision: per-layer decisions</h2>"
                     + _table(tuning.decisions, ("device", "layer", "family", "speedup", "sensitivity", "quantized",
                                                 "reason")))
    parts.append("<h2>Host checks (before any board time)</h2>" + _table(tuning.checks, tuple(tuning.checks.columns)))
    return "\n".join(parts)


def front_plot(rows: pd.DataFrame, recommended: str | None, device: str) -> Plot:
    with matplotlib.rc_context(PLOT_STYLE):
        fig = Figure(figsize=(9, 4.5))
        ax = fig.add_subplot()
        full = fronts.confirmed(rows)
        sizes = 60 + 300 * full["size_bytes"] / max(float(full["size_bytes"].max()), 1.0)
        ax.scatter(full["latency_p50_ms"], full["quality"], s=sizes, color="#e08a1e", alpha=0.8, label="measured")
        front = fronts.pareto(full)
        ax.plot(front["latency_p50_ms"], front["quality"], "-o", color="#2f6fb0", linewidth=2.5, markersize=8,
                label="Pareto front")
        for row in front.itertuples():
            ax.annotate(str(row.candidate), (row.latency_p50_ms, row.quality), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        best = full[full["job_id"] == recommended]
        ax.scatter(best["latency_p50_ms"], best["quality"], s=260, facecolors="none", edgecolors="#c0392b",
                   linewidths=2, label="recommended")
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel(str(full["quality_metric"].iloc[0]) if not full.empty else "quality")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        figure_id = f"{FRONT_FIGURE_ID}-{zlib.crc32(device.encode()) % 10_000}"
        return Plot(figure_id, figure_svg(fig, figure_id),
                    f"{device}: fully measured candidates (marker area: size); the line is the Pareto front")


def _card_html(card: fronts.DeploymentCard) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(str(v))}</code></td></tr>" for k, v in card.lines())
    return f'<h3>Deployment card</h3>\n<table class="card">{rows}</table>'


def _table(frame: pd.DataFrame, columns: tuple[str, ...]) -> str:
    present = [c for c in columns if c in frame.columns]
    if frame.empty or not present:
        return "<p>(none)</p>"
    return f'<div class="table-wrap">{frame[present].to_html(index=False, float_format=lambda v: f"{v:.4g}")}</div>'
