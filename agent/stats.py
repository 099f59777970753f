"""Latency statistics from raw per-iteration samples (nanoseconds)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NS_PER_MS = 1e6


@dataclass(frozen=True)
class LatencyStats:
    count: int
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    cv: float

    @classmethod
    def from_samples_ns(cls, samples_ns: Sequence[int]) -> LatencyStats:
        ms = np.asarray(samples_ns, dtype=np.float64) / NS_PER_MS
        if ms.size == 0:
            raise ValueError("no latency samples to summarise")
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        mean = float(ms.mean())
        std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
        return cls(count=int(ms.size), min_ms=float(ms.min()), max_ms=float(ms.max()),
                   mean_ms=mean, std_ms=std, p50_ms=float(p50), p90_ms=float(p90),
                   p95_ms=float(p95), p99_ms=float(p99), cv=std / mean if mean > 0 else 0.0)
