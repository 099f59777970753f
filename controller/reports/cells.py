"""How one value reads in the HTML table: ms to 3 significant digits, sizes in KiB/MiB, accuracy in %."""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import pandas as pd

MISSING = "—"
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB")


def significant(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant digits, without exponent notation (1234.5 reads "1,235")."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def binary_size(size_bytes: float) -> str:
    """A byte count in the largest binary unit that keeps it at or above 1 (e.g. "4.56 MiB")."""
    value, unit = float(size_bytes), _BINARY_UNITS[0]
    for unit in _BINARY_UNITS:
        if abs(value) < 1024 or unit == _BINARY_UNITS[-1]:
            break
        value /= 1024
    return f"{value:.0f} B" if unit == "B" else f"{significant(value)} {unit}"


def percent(fraction: float) -> str:
    """A fraction as a percentage with one decimal (0.7613 reads "76.1 %")."""
    return f"{fraction * 100:.1f} %"


def cosine(value: float) -> str:
    """Six decimals: fidelity lives in the digits after 0.99."""
    return f"{value:.6f}"


def decibels(value: float) -> str:
    """SNR in dB; +inf means the outputs were identical."""
    return "identical" if value == math.inf else f"{value:.1f} dB"


def integer(value: float) -> str:
    return f"{value:,.0f}"


def format_value(value: object, number_format: Callable[[float], str] | None) -> str:
    """Format a number with `number_format` (None: a text column); strings such as "not available"
    and timestamps pass through as text."""
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if number_format is not None and isinstance(value, numbers.Real):
        return number_format(float(value))
    return str(value)
