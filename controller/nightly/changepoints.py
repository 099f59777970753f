"""Change points over a benchmark's history: the nights where its median latency stepped to a new
level and stayed there. Night against last-good cannot see a model that gets 2 % slower every week;
a change point over the whole series can, and so can it see a step that a noisy night hid.

Method, on one series (one run median per night, in time order):
  1. log scale, so a step is a ratio whatever the model's speed;
  2. noise: sigma from the median absolute difference of neighbouring nights, which a step barely moves;
  3. candidates: ruptures' PELT with an l2 cost and a BIC-style penalty (PENALTY x sigma^2 x ln n),
     segments of at least MIN_SEGMENT nights;
  4. significance: a candidate stays only if the nights after it differ from the nights before it (up
     to the neighbouring change points) with p < p_value on a t-test that uses the series' own sigma,
     and by at least min_step;
  5. confirmation: a change point is confirmed once confirm_nights nights sit at the new level.
Why ruptures: it installs beside our numpy and scipy. Apache Otava pins numpy 2.2 and pulls in
BigQuery and Slack clients; MongoDB's signal-processing-algorithms requires numpy < 2. The figures
that chose the settings are C1-detect and C1-false-per-100 in `make bench` (benchmarks/changepoints.py).
Pure functions over plain data.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ruptures
from scipy import stats

MIN_SEGMENT = 2


@dataclass(frozen=True)
class ChangePointPolicy:
    min_step: float = 0.02         # smaller steps are not reported, whatever their p-value
    p_value: float = 0.01          # Otava's 0.001 needs ~6 nights after a 5 % step at 1 % noise: C1
    penalty: float = 3.0           # times sigma^2 ln n: higher finds fewer candidates
    confirm_nights: int = 3        # nights at the new level before the change counts

    @property
    def min_nights(self) -> int:
        """The shortest history a change point can be confirmed in: a level before, confirm_nights after."""
        return MIN_SEGMENT + self.confirm_nights


@dataclass(frozen=True)
class Night:
    """One night of one series: its run and the run's median latency."""

    run_id: str
    at: float                      # when it was measured, Unix seconds
    median_ms: float


@dataclass(frozen=True)
class ChangePoint:
    series: str
    index: int                     # position of the first night at the new level
    run_id: str                    # that night's run
    at: float
    before_ms: float               # median of the nights before it (back to the previous change point)
    after_ms: float                # median of the nights after it (up to the next)
    p_value: float
    nights_after: int              # nights at the new level so far, this one included
    confirmed: bool

    @property
    def step(self) -> float:
        """after / before - 1: +0.05 is 5 % slower."""
        return self.after_ms / self.before_ms - 1

    def describe(self) -> str:
        state = "confirmed" if self.confirmed else "not yet confirmed"
        return (f"{self.series}: {self.step:+.1%} from {self.before_ms:.4g} to {self.after_ms:.4g} ms at run "
                f"{self.run_id} (p={self.p_value:.1e}, {self.nights_after} night(s) since, {state})")


def change_points(series: str, nights: Sequence[Night], policy: ChangePointPolicy | None = None) -> list[ChangePoint]:
    """The significant steps of one series, oldest first (none when it has fewer than policy.min_nights)."""
    policy = policy or ChangePointPolicy()
    steps = significant_steps([night.median_ms for night in nights], policy)
    indices = sorted(steps)
    found = []
    for position, index in enumerate(indices):
        end = indices[position + 1] if position + 1 < len(indices) else len(nights)
        before, after, p = steps[index]
        found.append(ChangePoint(series, index, nights[index].run_id, nights[index].at, before, after, p,
                                 end - index, end - index >= policy.confirm_nights))
    return found


def significant_steps(values: Sequence[float], policy: ChangePointPolicy) -> dict[int, tuple[float, float, float]]:
    """index of the first value at a new level -> (median before, median after, p-value)."""
    if len(values) < policy.min_nights or min(values) <= 0:
        return {}
    logs = np.log(np.asarray(values, dtype=np.float64))
    sigma = noise(logs)
    candidates = _candidates(logs, sigma, policy)
    kept: dict[int, tuple[float, float, float]] = {}
    for position, index in enumerate(candidates):
        start = candidates[position - 1] if position else 0
        end = candidates[position + 1] if position + 1 < len(candidates) else len(values)
        before, after = logs[start:index], logs[index:end]
        p = _p_value(before, after, sigma)
        ratio = math.exp(float(np.median(after)) - float(np.median(before)))
        if p < policy.p_value and abs(ratio - 1) >= policy.min_step:
            kept[index] = (float(np.exp(np.median(before))), float(np.exp(np.median(after))), p)
    return kept


def noise(logs: np.ndarray) -> float:
    """sigma of one night's log median: MAD of neighbouring differences / sqrt 2, scaled to a normal sd."""
    differences = np.diff(logs)
    mad = float(np.median(np.abs(differences - np.median(differences))))
    return max(1.4826 * mad / math.sqrt(2), 1e-4)   # a floor: identical nights would make any step "significant"


def _candidates(logs: np.ndarray, sigma: float, policy: ChangePointPolicy) -> list[int]:
    algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(logs.reshape(-1, 1))
    ends = algo.predict(pen=policy.penalty * sigma ** 2 * math.log(len(logs)))
    return [end for end in ends if end < len(logs)]   # ruptures ends every segmentation with len(logs)


def _p_value(before: np.ndarray, after: np.ndarray, sigma: float) -> float:
    """Two-sided t-test of the level change; the series-wide sigma stands in for each side's spread,
    which two or three nights cannot estimate."""
    spread = max(sigma, math.sqrt((np.var(before, ddof=1) + np.var(after, ddof=1)) / 2)
                 if min(len(before), len(after)) > 2 else sigma)
    t = (float(np.mean(after)) - float(np.mean(before))) / (spread * math.sqrt(1 / len(before) + 1 / len(after)))
    return float(2 * stats.t.sf(abs(t), df=len(before) + len(after) - 2))
