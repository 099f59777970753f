"""How compressors report progress without printing.

The controller turns these calls into rich progress bars; a compressor only
names its current phase and how far through it is.
"""
from __future__ import annotations

from collections.abc import Callable

# (phase name, fraction done in 0..1)
ProgressFn = Callable[[str, float], None]


def report(progress: ProgressFn | None, phase: str, fraction: float) -> None:
    """Call `progress` if there is one; clamp the fraction so a caller's bar never overflows."""
    if progress is not None:
        progress(phase, min(max(fraction, 0.0), 1.0))
