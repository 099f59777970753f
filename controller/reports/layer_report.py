"""The report's per-layer section: for each variant × device with a layer profile, coverage of the
end-to-end time, time by op family and by placement, glue time, the slowest layers and a plot.
Reads LayerTables (results/layer_frame.py), built from the store; never measures."""
from __future__ import annotations

from html import escape

import pandas as pd

from edgefarm.controller.reports import layer_views as views
from edgefarm.controller.reports.cells import integer, percent, significant
from edgefarm.controller.reports.frame import sort_results
from edgefarm.controller.reports.layer_plots import family_colors, layer_plot
from edgefarm.controller.reports.plots import figure_html
from edgefarm.controller.reports.table import ColumnFormat, frame_table
from edgefarm.controller.results.layer_frame import LayerTables

SECTION_ID = "layers"
HOW_TO_PROFILE = ("measure with <code>--profile</code> (<code>edgefarm run MODEL --recipe R --profile</code>, "
                  "<code>profile: true</code> in a nightly matrix, or <code>edgefarm.Measure(profile=True)</code>)")
CSS = """
.layers article { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px;
                  margin: 0 0 16px; max-width: 1400px; }
.layers h3 { font-size: 15px; margin: 0 0 4px; }
.layers h4 { font-size: 13px; margin: 12px 0 4px; }
.layer-grid { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); }
.layers figure { margin-top: 12px; }
"""
_US = ColumnFormat("µs", significant)
_SHARE = ColumnFormat("share", percent)
FAMILY_FORMATS = {"op_family": ColumnFormat("op family"), "layers": ColumnFormat("layers", integer),
                  "time_us": _US, "share": _SHARE}
PLACEMENT_FORMATS = {"placement": ColumnFormat("placement"), "layers": ColumnFormat("layers", integer),
                     "time_us": _US, "share": _SHARE}
TOP_FORMATS = {"name": ColumnFormat("layer"), "op_type": ColumnFormat("op type"), "op_family": ColumnFormat("family"),
               "placement": ColumnFormat("placement"), "precision": ColumnFormat("precision"),
               "median_us": ColumnFormat("median µs", significant), "p90_us": ColumnFormat("p90 µs", significant),
               "share": _SHARE}
COVERAGE_FORMATS = {"what": ColumnFormat("coverage"), "value": ColumnFormat("value")}


def layer_section(tables: LayerTables) -> str:
    """The section's HTML; one line saying how to get profiles when no result has one."""
    profiles = sort_results(tables.profiles)
    shown = profiles[profiles["profiled"].astype(bool)]
    if shown.empty:
        return (f'<section class="layers" id="{SECTION_ID}">\n<p class="meta" id="layers-hint">No per-layer '
                f"profiles in this run: {HOW_TO_PROFILE}.</p>\n</section>")
    colors = family_colors(tables.layers["op_family"])
    articles = [_article(row, tables.layers_of(row["job_id"]), f"layers-{n}", colors)
                for n, (_, row) in enumerate(shown.iterrows(), 1)]
    return "\n".join([f'<section class="layers" id="{SECTION_ID}">', "<h2>Per-layer profiles</h2>",
                      _intro(), *articles, _unprofiled(profiles), "</section>"])


def _intro() -> str:
    return ('<p class="meta">Layer times come from a separate profiling pass after the headline measurement. '
            "Coverage is Σ layer medians ÷ the headline p50. The profiler slows every kernel it times (ONNX "
            "Runtime formats shapes and thread-pool statistics inside each timed interval), so coverage above 1 "
            "means profiler overhead, not missing time; compare layers with each other and variants with each "
            "other, and take the headline for the end-to-end figure.</p>")


def _article(profile: pd.Series, layers: pd.DataFrame, ident: str, colors: dict[str, str]) -> str:
    title = f"{profile['model']} · {profile['variant']} on {profile['device']} ({profile['backend']})"
    parts = [f'<article class="layer-profile" id="{ident}">', f"<h3>{escape(title)}</h3>", _provenance(profile)]
    if not profile["available"]:
        return "\n".join([*parts, f'<p class="warning">{escape(str(profile["reason"]))}</p>', "</article>"])
    if not profile["timed"]:
        parts.append(f'<p class="meta">Per-layer time: {escape(str(profile["reason"]) or "not available")}; '
                     "placement only.</p>")
    parts.append(_tables(profile, layers, ident))
    if profile["timed"]:
        plot = layer_plot(layers, float(profile["e2e_p50_us"]), title, f"fig-{ident}", colors)
        parts.append(figure_html(plot))
    return "\n".join([*parts, "</article>"])


def _provenance(profile: pd.Series) -> str:
    bits = [str(profile["profiler"]), f"{profile['layer_count']} layers"]
    if profile["iterations"]:
        bits.append(f"{profile['iterations']} profiled runs")
    if profile["placement_source"]:
        bits.append(f"placement: {profile['placement_source']}")
    if profile["notes"]:
        bits.append(str(profile["notes"]))
    return f'<p class="meta">{escape(" · ".join(b for b in bits if b))}</p>'


def _tables(profile: pd.Series, layers: pd.DataFrame, ident: str) -> str:
    grid = []
    if profile["timed"]:
        grid.append(_titled("Coverage of the end-to-end time", frame_table(
            _coverage_rows(views.coverage(profile)), COVERAGE_FORMATS, table_id=f"{ident}-coverage")))
        grid.append(_titled("Time by op family", frame_table(views.time_by(layers, "op_family"), FAMILY_FORMATS,
                                                             table_id=f"{ident}-family") + _glue_line(layers)))
    grid.append(_titled("Time by placement", frame_table(views.time_by(layers, "placement"), PLACEMENT_FORMATS,
                                                         table_id=f"{ident}-placement")))
    html = f'<div class="layer-grid">\n{"".join(grid)}\n</div>'
    if profile["timed"]:
        html += _titled(f"Top {views.TOP_LAYERS} layers by time", frame_table(
            views.top_layers(layers), TOP_FORMATS, table_id=f"{ident}-top"))
    return html


def _titled(title: str, body: str) -> str:
    return f'<div>\n<h4>{escape(title)}</h4>\n<div class="table-wrap">\n{body}\n</div>\n</div>'


def _coverage_rows(c: views.Coverage) -> pd.DataFrame:
    rows = [("Σ layer medians", _us(c.layer_sum_us)), ("headline p50 (no profiler)", _us(c.e2e_p50_us)),
            ("coverage: Σ ÷ headline p50", _times(c.of_headline)),
            ("profiled pass: run median", _us(c.profiled_run_us)),
            ("Σ ÷ profiled run median", _times(c.of_profiled_run)),
            ("profiler slowdown: profiled run ÷ headline", _times(c.profiler_slowdown))]
    return pd.DataFrame(rows, columns=["what", "value"])


def _us(value: float | None) -> str:
    return "not recorded" if value is None else f"{significant(value)} µs"


def _times(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.2f}×"


def _glue_line(layers: pd.DataFrame) -> str:
    g = views.glue(layers)
    if not g.layers:
        return '<p class="meta glue">Glue: none (no quantize/dequantize, transpose, reorder, cast or copy).</p>'
    share = f", {percent(g.share)} of layer time" if g.share is not None else ""
    time = f"{significant(g.time_us)} µs" if g.time_us is not None else "time not available"
    return (f'<p class="meta glue">Glue: {g.layers} layers, {time}{share} '
            f"({escape(', '.join(g.op_types))}).</p>")


def _unprofiled(profiles: pd.DataFrame) -> str:
    missing = profiles[~profiles["profiled"].astype(bool)]
    if missing.empty:
        return ""
    names = ", ".join(f"{r.model} {r.variant} on {r.device}" for r in missing.itertuples())
    return f'<p class="meta" id="layers-hint">Without a per-layer profile: {escape(names)}; {HOW_TO_PROFILE}.</p>'
