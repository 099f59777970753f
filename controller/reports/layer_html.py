"""A self-contained HTML page of one layer diff (reads a LayerDiff, never measures)."""
from __future__ import annotations

import html

from edgefarm.controller.reports.layer_diff import LayerDiff, explain


def diff_html(diff: LayerDiff) -> str:
    groups = diff.frame().to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.2f}", table_id="groups")
    totals = diff.totals().to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.1f}", table_id="totals")
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in explain(diff))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgefarm diff</title></head><body>"
            f"<h1>Per-layer diff</h1><ul id='explanation'>{lines}</ul><h2>Totals</h2>{totals}"
            f"<h2>Aligned groups</h2>{groups}</body></html>")
