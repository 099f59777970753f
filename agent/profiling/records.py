"""A profiling pass's per-layer table as plain frozen records (the job converts them to the wire)."""
from __future__ import annotations

from dataclasses import dataclass


class ProfileFormatError(Exception):
    """A profile file the runtime wrote cannot be read: an infrastructure fault, named by its file."""


@dataclass(frozen=True)
class LayerRow:
    name: str
    op_type: str
    op_family: str
    placement: str
    precision: str = ""
    is_glue: bool = False
    count: int = 1
    timed: bool = False
    median_us: float = 0.0
    p90_us: float = 0.0
    output_shapes: tuple[str, ...] = ()
    source_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerProfile:
    available: bool
    unavailable_reason: str = ""
    profiler: str = ""
    iterations: int = 0
    dropped_iterations: int = 0
    layers: tuple[LayerRow, ...] = ()
    timing_unavailable_reason: str = ""
    placement_source: str = ""
    notes: str = ""
    profiled_median_us: float = 0.0

    @staticmethod
    def not_available(reason: str) -> LayerProfile:
        return LayerProfile(available=False, unavailable_reason=f"not available: {reason}")
