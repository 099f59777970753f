"""The HTML report: one self-contained file (inline CSS and SVG plots, no network) to open offline."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd

from edgefarm.controller.reports.frame import require_accuracy_fraction, require_report_frame, throttled_mask
from edgefarm.controller.reports.layer_report import CSS as LAYER_CSS
from edgefarm.controller.reports.layer_report import layer_section
from edgefarm.controller.reports.plots import Plot, figure_html, report_plots
from edgefarm.controller.reports.table import THROTTLED_FLAG, summary_table
from edgefarm.controller.results.layer_frame import LayerTables

# Belt and braces for "opens offline": even if something slipped a URL in, the browser may not fetch it.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #5f6b7a; --line: #d9dee3; --warn: #b45309; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; background: #f4f6f8; color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { margin-bottom: 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: var(--muted); margin: 0; }
.meta code { color: var(--ink); background: #e6eaee; padding: 1px 5px; border-radius: 4px; }
.warning { border-left: 4px solid var(--warn); background: #fff7ed; padding: 8px 12px; margin: 12px 0 0; }
.plots { display: grid; gap: 16px; max-width: 1400px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table.results { border-collapse: collapse; width: 100%; font-size: 12.5px;
                font-variant-numeric: tabular-nums; }
.results th, .results td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; }
.results td { white-space: nowrap; }
.results th { background: #eef1f4; font-weight: 600; vertical-align: bottom; }
.results .num { text-align: right; }
.results tbody tr:nth-child(even) { background: #f9fafb; }
.results tr.throttled { background: #fff3e0; }
.results .na { color: var(--muted); font-style: italic; }
.flag { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 9px; font-size: 11px;
        font-weight: 600; color: #fff; background: var(--warn); }
"""


def write_html(df: pd.DataFrame, path: Path, title: str, *, generated_at: datetime | None = None,
               extra_plots: Sequence[Plot] = (), preamble_html: str = "", layers: LayerTables | None = None) -> Path:
    """Write the report for `df` to `path` (parents created) and return `path`.

    Raises ValueError when a required column is missing, `df` has no rows, or an accuracy is not
    a fraction in [0, 1]. `generated_at` defaults to now (UTC). `preamble_html` (already escaped,
    e.g. the nightly verdict table) goes above the plots; `extra_plots` after the standard three.
    `layers` (results.layer_frame.layer_tables of the same results) adds the per-layer section.
    """
    require_report_frame(df)
    require_accuracy_fraction(df)
    page = render_html(df, title, generated_at or datetime.now(UTC), extra_plots, preamble_html, layers)
    return write_page(page, path)


def write_page(page: str, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def render_html(df: pd.DataFrame, title: str, generated_at: datetime, extra_plots: Sequence[Plot] = (),
                preamble_html: str = "", layers: LayerTables | None = None) -> str:
    """The report page as one HTML string."""
    plots = [*report_plots(df), *extra_plots]
    figures = "\n".join(figure_html(plot) for plot in plots)
    return html_page(title, _header(df, title, generated_at), "\n".join([
        f'{preamble_html}\n<section class="plots">\n{figures}\n</section>',
        f'<h2>Results</h2>\n<div class="table-wrap">\n{summary_table(df)}\n</div>',
        layer_section(layers) if layers is not None else ""]))


def html_page(title: str, header_html: str, main_html: str, *, extra_css: str = "") -> str:
    """A self-contained page in the report's style (inline CSS, no fetches): every edgefarm page uses it."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}{LAYER_CSS}{extra_css}</style>",
        "</head>",
        "<body>",
        header_html,
        f"<main>\n{main_html}\n</main>",
        "</body>",
        "</html>",
    ])


def _header(df: pd.DataFrame, title: str, generated_at: datetime) -> str:
    run_ids = list(dict.fromkeys(df["run_id"].astype(str)))
    runs = ", ".join(f"<code>{escape(run_id)}</code>" for run_id in run_ids)
    counts = (f"{len(df)} result{'s' * (len(df) != 1)} · {df['model'].nunique()} model(s) · "
              f"{df['device'].nunique()} device(s) · {df['variant'].nunique()} variant(s)")
    generated = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = f"Run{'s' * (len(run_ids) != 1)} {runs} · generated {generated} · {counts}"
    return (f'<header>\n<h1>{escape(title)}</h1>\n<p class="meta">{meta}</p>\n'
            f"{_measured_at(df)}{_throttle_warning(df)}</header>")


def _measured_at(df: pd.DataFrame) -> str:
    """What each model was fed, up front: a latency means nothing without the shapes it was measured at."""
    if "input_shapes" not in df.columns:
        return ""
    lines = []
    for (model, shapes), group in df.groupby(["model", "input_shapes"], sort=False):
        lines.append(f"<code>{escape(str(model))}</code> at <code>{escape(str(shapes))}</code>, {_data_kind(group)}")
    return f'<p class="meta">Measured at: {" · ".join(lines)}</p>\n'


def _data_kind(group: pd.DataFrame) -> str:
    # synthetic_inputs holds True, False or "not recorded" (a result from an older agent)
    kinds = set(group["synthetic_inputs"]) if "synthetic_inputs" in group.columns else set()
    if kinds == {True}:
        return "synthetic inputs"
    return "the user's inputs" if kinds == {False} else "inputs not recorded"



def _throttle_warning(df: pd.DataFrame) -> str:
    throttled = int(throttled_mask(df).sum())
    if throttled == 0:
        return ""
    verb = "was" if throttled == 1 else "were"
    return (f'<p class="warning">⚠ {throttled} of {len(df)} results {verb} measured while the board was '
            f'throttling (flagged <span class="flag">{THROTTLED_FLAG}</span> in the table, hatched in the '
            "latency plot); their latency is not comparable with the others.</p>\n")
