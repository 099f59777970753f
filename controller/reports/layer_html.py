"""A self-contained HTML page of one layer diff, in the report's style (reads a LayerDiff, never measures):
the explanation, a plot of time per aligned group, the totals, and every group with placement changes
called out."""
from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import pandas as pd

from edgefarm.controller.reports.cells import significant
from edgefarm.controller.reports.html_report import html_page
from edgefarm.controller.reports.layer_diff import LayerDiff, explain
from edgefarm.controller.reports.layer_plots import diff_plot
from edgefarm.controller.reports.plots import figure_html
from edgefarm.controller.reports.table import ColumnFormat, frame_table

DIFF_FIGURE_ID = "fig-diff"
MOVED = "moved"   # row class of a group whose placement changed
TOTAL_FORMATS = {"what": ColumnFormat("what"), "key": ColumnFormat("of"), "a_us": ColumnFormat("A µs", significant),
                 "b_us": ColumnFormat("B µs", significant), "delta_us": ColumnFormat("B − A µs", significant),
                 "ratio": ColumnFormat("B ÷ A", lambda v: f"{v:.2f}×")}
GROUP_FORMATS = {"match": ColumnFormat("match"), "family": ColumnFormat("family"), "layers_a": ColumnFormat("A layers"),
                 "layers_b": ColumnFormat("B layers"), "time_a_us": ColumnFormat("A µs", significant),
                 "time_b_us": ColumnFormat("B µs", significant), "ratio": ColumnFormat("B ÷ A", lambda v: f"{v:.2f}×"),
                 "precision_a": ColumnFormat("A precision"), "precision_b": ColumnFormat("B precision"),
                 "placement_a": ColumnFormat("A placement"), "placement_b": ColumnFormat("B placement"),
                 "note": ColumnFormat("note")}
CSS = ".results tr.moved { background: #fff3e0; }\n"


def diff_html(diff: LayerDiff, *, generated_at: datetime | None = None) -> str:
    """The page as one HTML string."""
    title = f"edgefarm diff: {diff.a.stored.job.variant} → {diff.b.stored.job.variant}"
    frame = diff.frame()
    plot = diff_plot(frame, diff.a.label, diff.b.label, DIFF_FIGURE_ID)
    lines = "".join(f"<li>{escape(line)}</li>" for line in explain(diff))
    main = "\n".join([
        f'<ul id="explanation">{lines}</ul>',
        f'<section class="plots">\n{figure_html(plot)}\n</section>',
        '<h2>Totals</h2>\n<div class="table-wrap">', frame_table(_totals(diff), TOTAL_FORMATS, table_id="totals"),
        "</div>",
        '<h2>Aligned groups</h2>\n<div class="table-wrap">',
        frame_table(frame, GROUP_FORMATS, table_id="groups", row_classes=frame["note"].map(_row_class)), "</div>",
    ])
    return html_page(title, _header(diff, title, generated_at or datetime.now(UTC)), main, extra_css=CSS)


def _header(diff: LayerDiff, title: str, generated_at: datetime) -> str:
    when = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"A <code>{escape(diff.a.label)}</code> · B <code>{escape(diff.b.label)}</code> · "
            f"{diff.aligned_compute_a} of {diff.compute_layers_a} compute layers of A aligned "
            f"({diff.aligned_share:.0%}) · generated {when}")
    return f'<header>\n<h1>{escape(title)}</h1>\n<p class="meta">{meta}</p>\n</header>'


def _totals(diff: LayerDiff) -> pd.DataFrame:
    totals = diff.totals()
    ratio = totals["b_us"] / totals["a_us"].where(totals["a_us"] > 0)
    return totals.assign(delta_us=totals["b_us"] - totals["a_us"], ratio=ratio)


def _row_class(note: str) -> str:
    return MOVED if note else ""
