"""C1: change-point detection over nightly histories built from real repeated measurements.

A real local agent measures a small model RUNS times (P7's runs); each run's median is one "night".
A/A histories draw NIGHTS nights from those medians at random: any change point found in them is a
false one (C1-false-per-100, per 100 nights). Detection histories are the same draws with a 5 % step
injected from a random night on (every later median times 1.05: injected, not measured), and are
cut CONFIRM nights after the step, as the nightly sees them when the step is 3 nights old: the step
is found if a change point lands within one night of it (C1-detect).
"""
from __future__ import annotations

import os

import numpy as np

from benchmarks.figures import Figure
from benchmarks.regression_verdicts import measure_runs
from edgefarm.controller.nightly.changepoints import ChangePointPolicy, significant_steps

RUNS = 40
NIGHTS = 20
TRIALS = 400
STEP = 1.05
CONFIRM = 3


def changepoint_figures(policy: ChangePointPolicy | None = None) -> list[Figure]:
    policy = policy or ChangePointPolicy()
    load = os.getloadavg()[0]
    medians = np.array([float(np.median(run.samples_ns)) / 1e6 for run in measure_runs(RUNS)])
    spread = float(np.std(np.log(medians)))
    conditions = (f"{RUNS} real runs of a 64x2 MLP through a local agent, run-to-run sd of the median "
                  f"{spread:.1%}, load average {load:.1f}; {TRIALS} histories; p<{policy.p_value:g}, "
                  f"penalty {policy.penalty:g}")
    return [_false_figure(medians, policy, conditions), _detect_figure(medians, policy, conditions)]


def _false_figure(medians: np.ndarray, policy: ChangePointPolicy, conditions: str) -> Figure:
    rng = np.random.default_rng(0)
    found = sum(len(significant_steps(list(rng.choice(medians, NIGHTS)), policy)) for _ in range(TRIALS))
    per_100 = 100 * found / (TRIALS * NIGHTS)
    return Figure("C1-false-per-100", "false change points per 100 A/A nights", per_100, "",
                  f"{found} in {TRIALS} histories of {NIGHTS} nights drawn from the real run medians; {conditions}",
                  "<= 1")


def _detect_figure(medians: np.ndarray, policy: ChangePointPolicy, conditions: str) -> Figure:
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(TRIALS):
        at = int(rng.integers(NIGHTS // 2 - 2, NIGHTS - CONFIRM))
        history = rng.choice(medians, at + CONFIRM) * np.where(np.arange(at + CONFIRM) >= at, STEP, 1.0)
        steps = significant_steps(list(history), policy)
        hits += any(abs(index - at) <= 1 and after > before for index, (before, after, _) in steps.items())
    return Figure("C1-detect", "injected 5 % step found within 3 nights", 100 * hits / TRIALS, "%",
                  f"{hits}/{TRIALS} histories with the step injected (not measured) {CONFIRM} nights before "
                  f"their end; {conditions}", ">= 95")
