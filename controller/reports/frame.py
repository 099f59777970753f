"""The shape of a results frame: which columns a report needs, in what order, and how rows sort."""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

REPORT_COLUMNS: tuple[str, ...] = (
    "run_id", "model", "variant", "device", "backend",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "fps",
    "size_bytes", "accuracy", "load_ms", "first_inference_ms",
)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "latency_p95_ms", "latency_mean_ms", "latency_std_ms", "latency_cv", "latency_count",
    "compute_p50_ms", "peak_rss_mb", "provider", "device_accuracy",
    "avg_power_w", "energy_mj_per_inference", "power_sensor", "throttled", "measured_at",
    "params_after", "sparsity_after", "macs_after",
    "input_shapes", "synthetic_inputs", "fidelity_cosine", "fidelity_snr_db", "top1_agreement",
    "device_fidelity_cosine", "device_fidelity_snr_db", "device_top1_agreement", "fidelity_flag",
    "fidelity_source", "unstable",
)
# What the store writes in a power column when the board has no sensor; shown as-is, never as a number.
NOT_AVAILABLE = "not available"
# Recipes in the order engineers read them: the float baseline first, then ever more compressed.
KNOWN_VARIANTS: tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-static")
_TRUE_STRINGS = frozenset({"true", "yes", "1"})


def require_report_frame(df: pd.DataFrame) -> None:
    """Raise ValueError unless `df` has every required column and at least one row."""
    missing = [name for name in REPORT_COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks required column(s): {', '.join(missing)}")
    if df.empty:
        raise ValueError("results frame has no rows: nothing was measured, so there is nothing to report")


def require_accuracy_fraction(df: pd.DataFrame) -> None:
    """Raise ValueError when an accuracy is not a fraction in [0, 1] (a percentage would plot 100x off)."""
    accuracy = pd.to_numeric(df["accuracy"], errors="raise")
    outside = df[(accuracy < 0) | (accuracy > 1)]
    if not outside.empty:
        first = outside.iloc[0]
        raise ValueError(f"accuracy must be a fraction in [0, 1]; got {first['accuracy']!r} for "
                         f"{first['model']} {first['variant']} on {first['device']}")


def report_columns(df: pd.DataFrame) -> list[str]:
    """The required columns, then the optional ones `df` has; anything else is not part of a report."""
    return [*REPORT_COLUMNS, *(name for name in OPTIONAL_COLUMNS if name in df.columns)]


def variant_order(variants: Iterable[str]) -> list[str]:
    """Known recipes in their canonical order, then any others alphabetically."""
    present = set(variants)
    known = [name for name in KNOWN_VARIANTS if name in present]
    return known + sorted(present - set(known))


def sort_results(df: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by model and device, variants in recipe order within each group."""
    rank = {name: position for position, name in enumerate(variant_order(df["variant"]))}
    by_rank = lambda column: column.map(rank) if column.name == "variant" else column
    return df.sort_values(["model", "device", "variant"], key=by_rank, kind="stable")


def throttled_mask(df: pd.DataFrame) -> pd.Series:
    """True for rows measured while the board throttled; False when the column is absent or empty."""
    if "throttled" not in df.columns:
        return pd.Series(False, index=df.index, dtype=bool)
    return df["throttled"].map(_is_true).astype(bool)


def _is_true(value: object) -> bool:
    # SQLite hands booleans back as 0/1 and a CSV round trip as "True"/"False".
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return bool(value) if pd.notna(value) else False


def series_labels(df: pd.DataFrame) -> pd.Series:
    """Name each row's series: its device, plus backend and run only where needed to tell rows apart."""
    keys = ["device"]
    for extra in ("backend", "run_id"):
        if df.duplicated(["model", "variant", *keys]).any():
            keys.append(extra)
    return df[keys].astype(str).agg(" · ".join, axis=1)


def variant_labels(df: pd.DataFrame, separator: str = " ") -> pd.Series:
    """The variant name, prefixed with the model when the frame holds more than one model."""
    if df["model"].nunique() > 1:
        return df["model"].astype(str) + separator + df["variant"].astype(str)
    return df["variant"].astype(str)
