"""Nightly regression verdicts: tonight's raw latency samples against the baseline's.

`compare(baseline, candidate, policy)` gives improved / unchanged / suspect / incomparable for one
(model, recipe, device, backend); a suspect is re-run once on a fresh lease and `confirm(first, rerun)`
turns it into regressed or not. Only confirmed regressions fail CI (`exit_code`). Pure functions over
plain data; `sample_of` builds a `Sample` from a stored `Result`.

Method. A first-pass regression needs all of:
  * practical effect: candidate median / baseline median >= 1 + min_effect (5 % unless the device has
    its own), on the raw samples, i.e. the p50 the reports show;
  * significance: the (1 - alpha) bootstrap interval of that ratio lies above 1. Each run is cut into 25
    contiguous blocks and the bootstrap resamples block medians (2000 times, fixed seed, so a verdict is
    reproducible): neighbouring iterations are correlated, blocks of ~1000 iterations far less so;
  * reproduction (in `confirm`): the re-run is suspect too, and the two passes disagree with each other
    by less than the smaller slowdown they report; two runs of one artifact that differ by more than
    the regression they allege say the board's timing moved, so the pair is incomparable.
An interval that holds both 1 and a threshold-sized change is incomparable ("too noisy to judge"),
not unchanged: such a run could not have shown the regression it would be vouching against.

Why not a test on iterations: Mann-Whitney U on the per-iteration samples of two real runs of the
same model (44 runs of 0.5 s through the local agent) gave p < 0.01 for 99 % of the A/A pairs.
Why the reproduction rule: one run per side cannot show between-run variance, and runs differ by
more than their blocks suggest. On the same 44 runs the first pass flagged 20 % of A/A pairs; a plain
"re-run suspect too" confirmed 7.4 % of A/A triples, this rule 3.3 %. Its cost, on 1500 sampled
triples with a real 20 % slowdown in both candidate runs: confirmed 40 % instead of 62 % (89 % instead
of 94 % among steady runs). Requiring agreement within the threshold instead cut false alarms to 1.9 %
but confirmed only 25 % (67 % among steady runs): too blunt where steady runs spread by 7 %.

Measured with real runs of a 64x2 MLP through the local agent on a shared 2-CPU VM where other tenants
kept the load average at 2.4-4.5 (goals: false alarms <= 1 %, detection >= 95 %): P7 in
benchmarks/regression_verdicts.py, twice, 20 runs each: false alarms 6.1 % and 1.7 % of A/A triples,
an injected 5 % slowdown (each run against itself scaled by 1.05) flagged in 65 % and 90 % of runs;
the 44 runs above: 3.3 % and 52 %. Every miss was a run whose timing moved 1.1-3.3x while it ran (a
neighbour on the core), and those come back incomparable, never unchanged; all 18 of the 44 runs
whose block medians stayed within 10 % of each other were flagged. 96 % of the false alarms left are
a quiet baseline against a candidate and a re-run that a neighbour slowed for their whole length by
a similar amount: one baseline run cannot tell that from a regression. A leased board has no such
neighbour; a noisy one gets a larger `per_device` threshold.
Tried and not chosen: the 10th percentile of block medians as the bootstrapped statistic (interference
only adds time) lifted detection to 77 % at the same false-alarm rate, but it misses regressions that
slow only part of the iterations, and its interval would not be the interval of the reported ratio;
40 blocks or alpha 0.05 raised first-pass false alarms to 24-26 % for a few points of detection.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from edgefarm.controller.agents.records import BenchmarkResult
from edgefarm.controller.planning.input_plan import shapes_text
from edgefarm.controller.results.stability import stability


class Outcome(StrEnum):
    IMPROVED = "improved"          # on the first pass: re-run once to confirm, as a suspect is
    UNCHANGED = "unchanged"
    SUSPECT = "suspect"            # regressed on the first pass; re-run once on a fresh lease to confirm
    REGRESSED = "regressed"        # confirmed by the re-run
    UNCONFIRMED = "unconfirmed"    # improved on the first pass, and the re-run did not reproduce it
    INCOMPARABLE = "incomparable"  # not judged: environment differed, a run was unstable, too few samples or noisy


# First-pass outcomes that a re-run on a fresh lease must reproduce before they count.
NEEDS_RERUN = (Outcome.SUSPECT, Outcome.IMPROVED)


@dataclass(frozen=True)
class BenchmarkKey:
    model: str
    recipe: str
    device: str
    backend: str

    def label(self) -> str:
        return f"{self.model}/{self.recipe} on {self.device} ({self.backend})"


@dataclass(frozen=True)
class Sample:
    """One measured run: its per-iteration latencies in time order and the environment fields that matter."""

    key: BenchmarkKey
    samples_ns: Sequence[int]
    fingerprint: Mapping[str, str] = field(default_factory=dict)
    unstable: str = ""             # why its median moved while it ran (controller/results/stability.py)
    tail: str = ""                 # why its spread is wild (its p99 is unreliable; its median compares)


@dataclass(frozen=True)
class RegressionPolicy:
    min_effect: float = 0.05          # practical threshold on the median, as a fraction
    alpha: float = 0.01               # two-sided: the bootstrap interval covers 1 - alpha
    per_device: Mapping[str, float] = field(default_factory=dict)  # device name → its own min_effect
    blocks: int = 25                  # contiguous blocks per run; block medians are the bootstrap's units
    resamples: int = 2000
    seed: int = 0                     # fixed, so the same samples always give the same verdict

    def min_effect_for(self, device: str) -> float:
        return self.per_device.get(device, self.min_effect)


@dataclass(frozen=True)
class Verdict:
    key: BenchmarkKey
    outcome: Outcome
    reason: str
    baseline_median_ns: float = float("nan")
    candidate_median_ns: float = float("nan")
    ratio: float = float("nan")       # candidate median / baseline median; > 1 is slower
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    min_effect: float = float("nan")  # the practical threshold this verdict applied
    differing_fields: tuple[str, ...] = ()

    def numbers(self) -> str:
        return (f"baseline median {self.baseline_median_ns / 1e6:.5g} ms, candidate median "
                f"{self.candidate_median_ns / 1e6:.5g} ms, ratio {self.ratio:.4f}, "
                f"CI [{self.ci_low:.4f}, {self.ci_high:.4f}]")


def compare(baseline: Sample, candidate: Sample, policy: RegressionPolicy | None = None) -> Verdict:
    """First-pass verdict; a regression comes back SUSPECT until `confirm` sees the re-run."""
    policy = policy or RegressionPolicy()
    differing = differing_fields(baseline.fingerprint, candidate.fingerprint)
    if differing:
        return Verdict(candidate.key, Outcome.INCOMPARABLE, _fingerprint_reason(differing, baseline, candidate),
                       differing_fields=differing)
    too_few = _too_few_samples(baseline, candidate)
    if too_few:
        return Verdict(candidate.key, Outcome.INCOMPARABLE, too_few)
    unstable = "; ".join(f"{side} unstable: {sample.unstable}" for side, sample in
                         (("baseline", baseline), ("candidate", candidate)) if sample.unstable)
    if unstable:  # its median moved while it ran: not compared at all
        return Verdict(candidate.key, Outcome.INCOMPARABLE, unstable)
    verdict = _measured_verdict(baseline, candidate, policy)
    tails = "; ".join(f"{side} {sample.tail}" for side, sample in (("baseline", baseline), ("candidate", candidate))
                      if sample.tail)
    # Never compared silently: the medians compare, and the verdict says whose tail is wild.
    return replace(verdict, reason=f"{verdict.reason} (unstable tail: {tails})") if tails else verdict


def confirm(first: Verdict, rerun: Verdict) -> Verdict:
    """A suspect becomes a regression, and an improvement an improvement, only if the re-run on a
    fresh lease reproduces it.

    Reproduces means: the re-run moves the same way, and the two passes disagree with each other by
    less than the smaller change they report. Two runs of one artifact that differ by more than the
    regression they allege show the board's timing moved, so nothing is judged (incomparable). A
    clean re-run's verdict replaces the suspect one; an improvement the re-run does not reproduce is
    unconfirmed, and its night never becomes a baseline (it would hide tomorrow's regression).
    """
    if first.outcome is Outcome.IMPROVED:
        return _confirm_improvement(first, rerun)
    if first.outcome is not Outcome.SUSPECT:
        return first
    if rerun.outcome not in (Outcome.SUSPECT, Outcome.REGRESSED):
        return replace(rerun, reason=f"first pass was suspect ({first.ratio - 1:+.1%}); re-run: {rerun.reason}")
    passes = f"first pass {first.ratio - 1:+.1%}, re-run {rerun.ratio - 1:+.1%}"
    smaller, larger = sorted((first.ratio, rerun.ratio))
    if larger / smaller > smaller + _RATIO_RESOLUTION:  # both share the baseline: this is candidate vs candidate
        return replace(rerun, outcome=Outcome.INCOMPARABLE,
                       reason=f"not reproducible: {passes}; the passes differ by more than the smaller slowdown")
    return replace(rerun, outcome=Outcome.REGRESSED, reason=f"confirmed by re-run: {passes}")


def _confirm_improvement(first: Verdict, rerun: Verdict) -> Verdict:
    passes = f"first pass {first.ratio - 1:+.1%}, re-run {rerun.ratio - 1:+.1%}"
    if rerun.outcome is Outcome.IMPROVED:
        larger, smaller = sorted((1 / first.ratio, 1 / rerun.ratio), reverse=True)   # speed-ups, > 1
        if larger / smaller <= smaller + _RATIO_RESOLUTION:
            return replace(rerun, reason=f"confirmed by re-run: {passes}")
    return replace(rerun, outcome=Outcome.UNCONFIRMED,
                   reason=f"improved on the first pass only ({passes}); re-run: {rerun.reason}")


def unconfirmed(first: Verdict, why: str) -> Verdict:
    """A first-pass improvement whose re-run did not measure."""
    return replace(first, outcome=Outcome.UNCONFIRMED, reason=f"improved on the first pass ({first.ratio - 1:+.1%}); "
                                                             f"{why}")


@dataclass(frozen=True)
class Unmeasured:
    """A planned benchmark the night has no verdict for, and why: its job failed, its board was
    quarantined or unreachable, or the re-run that had to confirm a suspect did not measure."""

    model: str
    recipe: str
    device: str          # the board it failed on, or the target (pool) when no board took it
    backend: str
    kind: str            # transport, infrastructure, backend-crash, timeout, bad-input, unconfirmed
    reason: str

    def label(self) -> str:
        return f"{self.model}/{self.recipe} on {self.device}" + (f" ({self.backend})" if self.backend else "")


# A night's exit codes (`edgefarm nightly --help`, README): green only when it measured what it planned.
EXIT_GOOD, EXIT_REGRESSED, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """1 only when a regression is confirmed; suspects, incomparables and improvements pass."""
    return int(any(v.outcome is Outcome.REGRESSED for v in verdicts))


def night_exit_code(verdicts: Sequence[Verdict], unmeasured: Sequence[Unmeasured]) -> int:
    """1 for a confirmed regression; else 3 when anything planned went unmeasured, or nothing was
    measured at all; else 0."""
    if exit_code(verdicts):
        return EXIT_REGRESSED
    if unmeasured or not verdicts:
        return EXIT_INCOMPLETE
    return EXIT_GOOD


# --- the environment fields that must match -------------------------------------------------------

# Clocks and power mode set the speed outright; runtime versions change kernels; batch size, input
# shapes and input data change the work. Temperatures and current frequency are effects of the run,
# not settings, so they stay out.
_SETTING_FIELDS = ("cpu_governor", "nvpmodel_mode", "jetson_clocks")


def fingerprint_of(result: BenchmarkResult) -> dict[str, str]:
    """The fields of a stored Result that decide whether two runs may be compared at all."""
    env = result.environment
    fields = {name: getattr(env, name) for name in _SETTING_FIELDS}
    fields["batch_size"] = str(result.batch_size)
    if result.input_source:  # edgefarm.v1.1: what was fed is part of what was measured
        fields["input_shapes"] = shapes_text(result.input_shapes)
        fields["inputs"] = result.input_source
    fields.update({f"versions.{name}": version for name, version in env.versions.items()})
    return fields


def sample_of(key: BenchmarkKey, result: BenchmarkResult) -> Sample:
    steadiness = stability(result)
    return Sample(key, tuple(result.samples_ns), fingerprint_of(result), steadiness.moved, steadiness.tail)


def differing_fields(baseline: Mapping[str, str], candidate: Mapping[str, str]) -> tuple[str, ...]:
    """Fields present on either side whose values differ (absent counts as a value), sorted."""
    names = sorted(set(baseline) | set(candidate))
    return tuple(name for name in names if baseline.get(name) != candidate.get(name))


def _fingerprint_reason(differing: tuple[str, ...], baseline: Sample, candidate: Sample) -> str:
    changes = [f"{name} {baseline.fingerprint.get(name, '(absent)')!r} -> "
               f"{candidate.fingerprint.get(name, '(absent)')!r}" for name in differing]
    return "environment differs: " + "; ".join(changes)


# --- the measurement --------------------------------------------------------------------------------

# A block median needs a few iterations to mean anything, and a bootstrap over fewer than this
# many blocks has too few distinct medians to give an interval.
_MIN_BLOCK_ITERATIONS = 5
_MIN_BLOCKS = 10
# Latencies are whole nanoseconds, so a 5.00 % slowdown of an 11 µs median can read 4.996 %:
# a ratio this close to the threshold counts as reaching it.
_RATIO_RESOLUTION = 1e-4


def _too_few_samples(baseline: Sample, candidate: Sample) -> str:
    fewest = min(len(baseline.samples_ns), len(candidate.samples_ns))
    needed = _MIN_BLOCKS * _MIN_BLOCK_ITERATIONS
    return f"too few samples to compare: {fewest} < {needed}" if fewest < needed else ""


def block_medians(samples_ns: Sequence[int], blocks: int) -> np.ndarray:
    """Medians of contiguous blocks: neighbouring iterations are correlated, blocks far less so."""
    samples = np.asarray(samples_ns, dtype=np.float64)
    count = max(_MIN_BLOCKS, min(blocks, len(samples) // _MIN_BLOCK_ITERATIONS))
    return np.array([np.median(block) for block in np.array_split(samples, count)])


def median_ratio_interval(baseline_blocks: np.ndarray, candidate_blocks: np.ndarray,
                          policy: RegressionPolicy) -> tuple[float, float]:
    """Percentile bootstrap interval of median(candidate blocks) / median(baseline blocks)."""
    rng = np.random.default_rng(policy.seed)
    ratios = _resampled_medians(candidate_blocks, rng, policy.resamples) / _resampled_medians(
        baseline_blocks, rng, policy.resamples)
    low, high = np.quantile(ratios, [policy.alpha / 2, 1 - policy.alpha / 2])
    return float(low), float(high)


def _resampled_medians(blocks: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    picks = rng.integers(0, len(blocks), size=(resamples, len(blocks)))
    return np.median(blocks[picks], axis=1)


def _measured_verdict(baseline: Sample, candidate: Sample, policy: RegressionPolicy) -> Verdict:
    base_median, cand_median = float(np.median(baseline.samples_ns)), float(np.median(candidate.samples_ns))
    ratio = cand_median / base_median
    low, high = median_ratio_interval(block_medians(baseline.samples_ns, policy.blocks),
                                      block_medians(candidate.samples_ns, policy.blocks), policy)
    min_effect = policy.min_effect_for(candidate.key.device)
    outcome, reason = _classify(ratio, low, high, min_effect)
    return Verdict(candidate.key, outcome, reason, base_median, cand_median, ratio, low, high, min_effect)


def _classify(ratio: float, low: float, high: float, min_effect: float) -> tuple[Outcome, str]:
    slower, faster = 1 + min_effect - _RATIO_RESOLUTION, 1 - min_effect + _RATIO_RESOLUTION
    if ratio >= slower and low > 1:
        return Outcome.SUSPECT, f"median {ratio - 1:+.1%}, interval above 1; re-run to confirm"
    if ratio <= faster and high < 1:
        return Outcome.IMPROVED, f"median {ratio - 1:+.1%}, interval below 1"
    if low > 1 or high < 1:
        return Outcome.UNCHANGED, f"median {ratio - 1:+.1%}: significant but under the {min_effect:.0%} threshold"
    if high >= 1 + min_effect or low <= 1 - min_effect:
        # Calling this unchanged would vouch for a run that could not have shown a threshold-sized change.
        return Outcome.INCOMPARABLE, (f"too noisy to judge: median {ratio - 1:+.1%}, interval [{low:.4f}, "
                                      f"{high:.4f}] holds both no change and a {min_effect:.0%} change")
    return Outcome.UNCHANGED, f"median {ratio - 1:+.1%}: within noise (interval [{low:.4f}, {high:.4f}] holds 1)"
