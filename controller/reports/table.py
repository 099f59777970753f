"""The HTML summary table: one row per result, units in the header, throttled rows flagged."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import pandas as pd

from edgefarm.controller.reports.cells import binary_size, cosine, decibels, format_value, integer, percent, significant
from edgefarm.controller.reports.frame import report_columns, sort_results, throttled_mask

THROTTLED_FLAG = "throttled"


@dataclass(frozen=True)
class ColumnFormat:
    header: str
    number: Callable[[float], str] | None = None  # None: shown as text

    @property
    def numeric(self) -> bool:
        return self.number is not None


_TEXT = ColumnFormat("")
COLUMN_FORMATS: dict[str, ColumnFormat] = {
    "run_id": ColumnFormat("run"),
    "model": ColumnFormat("model"),
    "variant": ColumnFormat("variant"),
    "device": ColumnFormat("device"),
    "backend": ColumnFormat("backend"),
    "latency_p50_ms": ColumnFormat("p50 ms", significant),
    "latency_p90_ms": ColumnFormat("p90 ms", significant),
    "latency_p99_ms": ColumnFormat("p99 ms", significant),
    "fps": ColumnFormat("fps", significant),
    "size_bytes": ColumnFormat("size", binary_size),
    "accuracy": ColumnFormat("accuracy", percent),
    "load_ms": ColumnFormat("load ms", significant),
    "first_inference_ms": ColumnFormat("first inf. ms", significant),
    "latency_p95_ms": ColumnFormat("p95 ms", significant),
    "latency_mean_ms": ColumnFormat("mean ms", significant),
    "latency_std_ms": ColumnFormat("std ms", significant),
    "latency_cv": ColumnFormat("CV", percent),
    "latency_count": ColumnFormat("samples", integer),
    "compute_p50_ms": ColumnFormat("compute p50 ms", significant),
    "peak_rss_mb": ColumnFormat("peak RSS MiB", significant),  # the store divides bytes by 2**20
    "provider": ColumnFormat("provider"),
    "device_accuracy": ColumnFormat("device accuracy", percent),
    "avg_power_w": ColumnFormat("avg power W", significant),
    "energy_mj_per_inference": ColumnFormat("mJ / inference", significant),
    "power_sensor": ColumnFormat("power sensor"),
    "throttled": ColumnFormat("throttled"),
    "measured_at": ColumnFormat("measured at"),
    "params_after": ColumnFormat("params", integer),
    "sparsity_after": ColumnFormat("sparsity", percent),
    "macs_after": ColumnFormat("MACs", integer),
    "input_shapes": ColumnFormat("input shapes"),
    "synthetic_inputs": ColumnFormat("synthetic inputs"),
    "fidelity_cosine": ColumnFormat("fidelity cosine", cosine),
    "fidelity_snr_db": ColumnFormat("fidelity SNR", decibels),
    "top1_agreement": ColumnFormat("top-1 agreement", percent),
    "device_fidelity_cosine": ColumnFormat("device fidelity cosine", cosine),
    "device_fidelity_snr_db": ColumnFormat("device fidelity SNR", decibels),
    "device_top1_agreement": ColumnFormat("device top-1 agreement", percent),
    "fidelity_flag": ColumnFormat("fidelity flag"),
    "fidelity_source": ColumnFormat("fidelity on")
}


def summary_table(df: pd.DataFrame) -> str:
    """An HTML <table> of every row of `df`, sorted by model, device and recipe, units in the header."""
    rows = sort_results(df)
    columns = report_columns(rows)
    if rows["run_id"].nunique() == 1:
        columns.remove("run_id")  # one run: the page header names it, a column would only repeat it
    throttled = throttled_mask(rows)
    head = "".join(_header_cell(name) for name in columns)
    body = "\n".join(_body_row(row, columns, throttled[index]) for index, row in rows.iterrows())
    return (f'<table class="results">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>")


def _header_cell(column: str) -> str:
    spec = COLUMN_FORMATS.get(column, _TEXT)
    css = ' class="num"' if spec.numeric else ""
    return f'<th scope="col"{css} title="{escape(column)}">{escape(spec.header or column)}</th>'


def _body_row(row: pd.Series, columns: list[str], throttled: bool) -> str:
    cells = "".join(_body_cell(column, row[column], throttled) for column in columns)
    css = ' class="throttled"' if throttled else ""
    return f"<tr{css}>{cells}</tr>"


def _body_cell(column: str, value: object, throttled: bool) -> str:
    spec = COLUMN_FORMATS.get(column, _TEXT)
    shown = escape(_shown_value(column, value, spec, throttled))
    classes = ["num"] if spec.numeric else []
    if spec.numeric and isinstance(value, str):
        classes.append("na")  # a note where a number would be: "not available", "not separable"
    if column == "device" and throttled:
        # The throttled column sits far right; flag next to the device so it shows without scrolling.
        shown += f' <span class="flag" title="measured while the board throttled">{THROTTLED_FLAG}</span>'
    css = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{css}>{shown}</td>"


def _shown_value(column: str, value: object, spec: ColumnFormat, throttled: bool) -> str:
    if column == "throttled" and not pd.isna(value):
        # Read through the mask: the store may hand back True, 1 or "true".
        return "yes" if throttled else "no"
    return format_value(value, spec.number)


def frame_table(df: pd.DataFrame, formats: dict[str, ColumnFormat], *, table_id: str = "",
                row_classes: pd.Series | None = None) -> str:
    """Any small frame as the report's table: the columns of `formats`, in its order, with its headers."""
    columns = [name for name in formats if name in df.columns]
    head = "".join(f'<th scope="col"{_num_class(formats[c])}>{escape(formats[c].header or c)}</th>' for c in columns)
    body = []
    for index, row in df.iterrows():
        css = row_classes[index] if row_classes is not None else ""
        cells = "".join(f"<td{_num_class(formats[c], row[c])}>{escape(format_value(row[c], formats[c].number))}</td>"
                        for c in columns)
        body.append(f'<tr class="{escape(css)}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return (f'<table class="results"{ident}>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{chr(10).join(body)}\n</tbody>\n</table>")


def _num_class(spec: ColumnFormat, value: object = 0.0) -> str:
    if not spec.numeric:
        return ""
    return ' class="num na"' if isinstance(value, str) else ' class="num"'
