"""Is one result steady enough to compare? pyperf warns before anyone compares an unstable run; so
do we. A result is flagged `unstable`, with the reason, when its own samples or environment say its
numbers moved while it was measured:
  * the samples spread: CV above max_cv (a demo run at CV 350 % has its p99 at 2.5x its p50);
  * its timing moved: the medians of contiguous blocks of iterations spread by more than
    max_block_spread (p90 / p10), the mark of another process on the board's cores;
  * the board throttled, or warmed by more than max_temp_rise_c, during the run.
Nightly never compares a result whose median moved (the pair is incomparable, saying why), and a
verdict on a result with a wild spread says so; reports show every flag."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgefarm.controller.agents.records import BenchmarkResult

_BLOCKS = 25
_MIN_BLOCK_ITERATIONS = 5


@dataclass(frozen=True)
class StabilityPolicy:
    max_cv: float = 1.0
    max_block_spread: float = 1.5
    max_temp_rise_c: float = 10.0


@dataclass(frozen=True)
class Stability:
    """Why a result is unstable, in two kinds. `moved`: its median itself moved while it ran (timing
    shifted, throttling, heat), so it is not compared at all. `tail`: its spread is wild (CV), so its
    p99 and mean are unreliable, while its median still compares (the verdict says so)."""

    moved: str = ""
    tail: str = ""

    def reason(self) -> str:
        return "; ".join(part for part in (self.moved, self.tail) if part)


def instability(result: BenchmarkResult, policy: StabilityPolicy | None = None) -> str:
    """Why `result` is unstable, "; "-joined; "" when it is steady."""
    return stability(result, policy).reason()


def stability(result: BenchmarkResult, policy: StabilityPolicy | None = None) -> Stability:
    policy = policy or StabilityPolicy()
    lat, env = result.latency, result.environment
    moved = []
    spread = block_spread(result.samples_ns)
    if spread > policy.max_block_spread:
        moved.append(f"block medians spread {spread:.2f}x: its timing moved while it ran (interference on the "
                     "board?)")
    if env.throttled:
        moved.append(f"the board throttled during the run ({', '.join(env.throttle_flags) or 'flagged'})")
    rise = _temperature_rise(env.temps_start_c, env.temps_end_c)
    if rise > policy.max_temp_rise_c:
        moved.append(f"temperature rose {rise:.0f} °C during the run")
    tail = ""
    if lat.cv > policy.max_cv:
        tail = f"CV {lat.cv:.0%} (p99 {lat.p99_ms / lat.p50_ms:.1f}x the p50)" if lat.p50_ms else f"CV {lat.cv:.0%}"
    return Stability("; ".join(moved), tail)


def block_spread(samples_ns: Sequence[int]) -> float:
    """p90 / p10 of the medians of contiguous blocks of iterations (1.0 = steady); 1.0 when too few."""
    count = min(_BLOCKS, len(samples_ns) // _MIN_BLOCK_ITERATIONS)
    if count < 10:
        return 1.0
    medians = [float(np.median(block)) for block in np.array_split(np.asarray(samples_ns, dtype=np.float64), count)]
    low, high = np.quantile(medians, [0.1, 0.9])
    return float(high / low) if low > 0 else math.inf


def _temperature_rise(start: Mapping[str, float], end: Mapping[str, float]) -> float:
    rises = [end[zone] - start[zone] for zone in start.keys() & end.keys()
             if math.isfinite(start[zone]) and math.isfinite(end[zone])]
    return max(rises, default=0.0)
