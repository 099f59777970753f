"""P7: error rates of the regression verdicts on real repeated measurements.

A real local agent measures a small model RUNS times. A/A: every ordered pair of distinct runs is a
baseline and a candidate that differ only by chance, and a third distinct run is the re-run that a
suspect gets, so false alarms are counted the way the farm raises them (confirmed regressions).
A/B: each real run against itself with every sample scaled by 1.05, an injected 5 % slowdown that
keeps the run's own noise and autocorrelation.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.figures import Figure
from benchmarks.models import mlp_model
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import BenchmarkResult, JobSpec
from edgefarm.controller.nightly.regression import (
    BenchmarkKey,
    Outcome,
    RegressionPolicy,
    Sample,
    Verdict,
    block_medians,
    compare,
    confirm,
    sample_of,
)

RUNS = 20
WARMUP_S, MEASURE_S = 0.1, 0.5
SLOWDOWN = 1.05
KEY = BenchmarkKey("mlp-64x2", "fp32", "local", "onnxruntime")


def measure_runs(count: int = RUNS) -> list[Sample]:
    with tempfile.TemporaryDirectory() as tmp, LocalAgent(Path(tmp) / "agent") as local:
        model = mlp_model(Path(tmp) / "mlp.onnx")
        client = AgentClient("local", local.address)
        client.connect()
        sha = sha256_file(model)
        client.ensure_uploaded(model, sha)
        runs = [_measure_once(client, sha) for _ in range(count)]
        client.close()
    return runs


def _measure_once(client: AgentClient, sha: str) -> Sample:
    spec = JobSpec(job_id="", artifact_sha256=sha, backend="onnxruntime", threads=1, batch_size=1,
                   warmup_iterations=10, warmup_seconds=WARMUP_S, min_iterations=100, min_seconds=MEASURE_S)
    final = list(client.benchmark(spec))[-1]
    if not isinstance(final, BenchmarkResult):
        raise RuntimeError(f"agent failed: {final.message}")
    return sample_of(KEY, final)


def slowed(run: Sample, factor: float = SLOWDOWN) -> Sample:
    scaled = np.round(np.asarray(run.samples_ns, dtype=np.float64) * factor).astype(np.int64)
    return Sample(run.key, tuple(scaled.tolist()), run.fingerprint)


def aa_verdicts(runs: list[Sample], policy: RegressionPolicy) -> dict[tuple[int, int], Verdict]:
    return {(b, c): compare(runs[b], runs[c], policy) for b, c in itertools.permutations(range(len(runs)), 2)}


def confirmed_aa_verdicts(verdicts: dict[tuple[int, int], Verdict], count: int) -> list[Verdict]:
    """Baseline b, candidate c and re-run r are three distinct real runs: every triple, confirmed."""
    return [confirm(verdicts[b, c], verdicts[b, r]) for b, c, r in itertools.permutations(range(count), 3)]


def block_spread(run: Sample, policy: RegressionPolicy) -> float:
    """p90 / p10 of a run's block medians: how far its timing moved while it ran (1.0 = steady)."""
    low, high = np.quantile(block_medians(run.samples_ns, policy.blocks), [0.1, 0.9])
    return float(high / low)


def false_alarm_figure(runs: list[Sample], policy: RegressionPolicy, conditions: str) -> Figure:
    verdicts = aa_verdicts(runs, policy)
    suspects = sum(v.outcome is Outcome.SUSPECT for v in verdicts.values())
    confirmed = confirmed_aa_verdicts(verdicts, len(runs))
    alarms = sum(v.outcome is Outcome.REGRESSED for v in confirmed)
    unstable = sum(v.outcome is Outcome.INCOMPARABLE for v in confirmed)
    return Figure("P7-false-alarm", "A/A runs confirmed as regressed", 100 * alarms / len(confirmed), "%",
                  f"{alarms}/{len(confirmed)} (baseline, candidate, re-run) triples of distinct real runs, "
                  f"{unstable} not reproducible; first pass {suspects}/{len(verdicts)} pairs suspect; {conditions}",
                  "<= 1")


def improve_false_figure(runs: list[Sample], policy: RegressionPolicy, conditions: str) -> Figure:
    """A/A triples confirmed as improved: an unconfirmed improvement never becomes a baseline, a
    confirmed one does, so a false one would hide the next night's regression."""
    verdicts = aa_verdicts(runs, policy)
    first = sum(v.outcome is Outcome.IMPROVED for v in verdicts.values())
    confirmed = confirmed_aa_verdicts(verdicts, len(runs))
    improved = sum(v.outcome is Outcome.IMPROVED for v in confirmed)
    return Figure("P7-improve-false", "A/A runs confirmed as improved", 100 * improved / len(confirmed), "%",
                  f"{improved}/{len(confirmed)} triples of distinct real runs; first pass {first}/{len(verdicts)} "
                  f"pairs improved (before #15 each of those was reported improved); {conditions}", "<= 1")


def detect_figure(runs: list[Sample], policy: RegressionPolicy, conditions: str) -> Figure:
    outcomes = [compare(run, slowed(run), policy).outcome for run in runs]
    flagged = sum(outcome is Outcome.SUSPECT for outcome in outcomes)
    noisy = [block_spread(run, policy) for run, outcome in zip(runs, outcomes, strict=True)
             if outcome is Outcome.INCOMPARABLE]
    misses = (f"{len(runs) - flagged} missed, {len(noisy)} of them judged too noisy (block medians moved "
              f"{min(noisy):.2f}-{max(noisy):.2f}x within the run)" if noisy else f"{len(runs) - flagged} missed")
    return Figure("P7-detect", "injected 5 % slowdown flagged", 100 * flagged / len(runs), "%",
                  f"{flagged}/{len(runs)}: each real run vs itself with samples scaled by {SLOWDOWN} "
                  f"(injected, not measured); {misses}; {conditions}", ">= 95")


def regression_figures(cache_dir: Path) -> list[Figure]:
    """cache_dir is unused: every figure comes from measurements taken in this same call."""
    load_before = os.getloadavg()[0]
    runs, policy = measure_runs(), RegressionPolicy()
    medians = [float(np.median(run.samples_ns)) for run in runs]
    conditions = (f"{len(runs)} runs of {MEASURE_S:g} s, run medians {min(medians) / 1e3:.1f}-"
                  f"{max(medians) / 1e3:.1f} us, load average {load_before:.1f}-{os.getloadavg()[0]:.1f} "
                  f"on {os.cpu_count()} CPUs")
    return [false_alarm_figure(runs, policy, conditions), improve_false_figure(runs, policy, conditions),
            detect_figure(runs, policy, conditions)]
