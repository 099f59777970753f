"""The per-layer views of one profiled result, each a groupby over its layer rows (results/layer_frame.py):
top layers by time, time by op family, by placement, glue time, and coverage of the end-to-end time.

Coverage is Σ layer medians ÷ the headline p50. It is not a check that the layers add up: the layer
times come from a separate profiled pass, and a runtime's profiler slows each kernel it times (ONNX
Runtime formats the kernel's shapes and thread-pool statistics inside the timed interval), so coverage
is also given against the profiled pass's own run time, beside how much slower that pass ran.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

TOP_LAYERS = 10


@dataclass(frozen=True)
class Coverage:
    layer_sum_us: float | None      # Σ layer medians; None when the runtime gave no per-layer time
    e2e_p50_us: float               # the headline p50, measured with no profiler on
    profiled_run_us: float | None   # median of one run of the profiled pass; None when not recorded

    @property
    def of_headline(self) -> float | None:
        return _ratio(self.layer_sum_us, self.e2e_p50_us)

    @property
    def of_profiled_run(self) -> float | None:
        return _ratio(self.layer_sum_us, self.profiled_run_us)

    @property
    def profiler_slowdown(self) -> float | None:
        """How much longer a run took with the profiler on than the headline p50."""
        return _ratio(self.profiled_run_us, self.e2e_p50_us)


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or not bottom or math.isnan(top) or math.isnan(bottom):
        return None
    return top / bottom


def coverage(profile: pd.Series) -> Coverage:
    """`profile` is one row of LayerTables.profiles."""
    return Coverage(_number(profile["layer_sum_us"]), float(profile["e2e_p50_us"]),
                    _number(profile["profiled_run_us"]))


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def top_layers(layers: pd.DataFrame, n: int = TOP_LAYERS) -> pd.DataFrame:
    """The `n` slowest layers with their share of Σ layer time."""
    timed = layers.dropna(subset=["median_us"])
    top = timed.nlargest(n, "median_us", keep="first")
    return top.assign(share=top["median_us"] / timed["median_us"].sum())[
        ["name", "op_type", "op_family", "placement", "precision", "median_us", "p90_us", "share"]]


def time_by(layers: pd.DataFrame, key: str) -> pd.DataFrame:
    """Layer count and Σ median time per value of `key` (op_family, placement), slowest first."""
    grouped = layers.groupby(key, sort=False, dropna=False).agg(layers=("name", "size"),
                                                                time_us=("median_us", _sum_or_none))
    total = layers["median_us"].sum(min_count=1)
    grouped["share"] = grouped["time_us"] / total if pd.notna(total) and total else None
    return grouped.reset_index().sort_values("time_us", ascending=False, kind="stable", na_position="last")


def _sum_or_none(times: pd.Series) -> float | None:
    return None if times.isna().any() else float(times.sum())


@dataclass(frozen=True)
class Glue:
    layers: int
    time_us: float | None
    share: float | None             # of Σ layer time
    op_types: tuple[str, ...]


def glue(layers: pd.DataFrame) -> Glue:
    """Quantize/dequantize, transposes, reorders, casts and copies: time spent moving data, not computing."""
    rows = layers[layers["is_glue"].astype(bool)]
    time_us = _sum_or_none(rows["median_us"]) if not rows.empty else 0.0
    total = _sum_or_none(layers["median_us"])
    share = time_us / total if time_us is not None and total else None
    return Glue(len(rows), time_us, share, tuple(dict.fromkeys(rows["op_type"])))
