"""Automatic bisection over an ordered sequence of model artifacts (nightly exports, training
checkpoints, recipe versions): which one first regressed against the good end?

Pure logic over plain data: the search asks a `Measurer` for one job at a time and never talks to a
board itself (controller/execution/bisect_run.py measures through the one executor). Like
Chromium's Pinpoint, each step has a sequential verdict:

  * different: the candidate's median is at least `threshold` slower than the good end's, and the
    block-bootstrap interval of the ratio lies above 1 (regression.py's first-pass rule);
  * same: the interval's top is below 1 + threshold, so a threshold-sized slowdown is excluded;
  * measure more: anything else (the interval straddles the threshold: too noisy to answer). The
    candidate and the good end are both measured again, and the runs of each are pooled (the block
    medians of every run, so the interval carries the spread between runs too), up to `max_rounds`
    runs each; still straddling, the step is unknown and the search stops saying so.

The ends are judged first (bad against good). Ends that do not bracket a regression (the bad end
not `threshold` slower, or the good end slower than the bad end) are measured once more each before
the bisect says so and stops: one slowed run must not end a search. The search then halves
[last same, first different] by comparing the midpoint with the good end: ceil(log2(n - 1)) steps
of one job each when every verdict is clear, plus the two ends (7 jobs for 32 artifacts).

A second guard against a run a neighbour slowed: a midpoint judged different from the good end that is
also `threshold` away from the bad end (faster or slower) is measured again (with whichever end has
no more runs than it). After one step change every artifact is like one end or the other, so such a
midpoint is a disturbed run, or a disturbed bad end; after `max_rounds` runs the verdict stands (a
gradual change really leaves artifacts between the ends). Why, measured with B1
(benchmarks/bisect_jobs.py: 32 checkpoints and their 34 %-slower twins, 3 real runs each through a
local agent, 310 bisections replayed with the regressed position varied) on a shared 2-CPU VM:
with the load average near 100, 10 of 96 runs of unchanged checkpoints read 5-45 % slow, and
without the guards 42 of 310 bisections named a wrong artifact (260 right, mean 8.0 jobs); with
them none did (301 right, 9 unknown: still straddling after 3 runs, mean 8.7 jobs). At a load
average near 14: 310 of 310 right, mean 7.5 jobs (median 7). Most extra jobs are straddling steps
(84 of 123 measure-more verdicts in 155 of those bisections at load 100), not the guards. Tried and not kept: judging a
suspect midpoint's re-run on its own (the nightly's confirm) cost fewer jobs (8.1) but named a wrong
artifact 5 times, where a burst slowed both runs; pooling only the runs within threshold/2 of an
artifact's fastest (interference only adds time) gave the same unknowns at 8.4 jobs, at the price
of a rule that drops measurements.

Runs are only compared on one board: when the board is lost, the measurer names another and the
ends are measured again there as needed; what earlier steps established about the sequence holds.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np

from edgefarm.controller.nightly.regression import (
    RegressionPolicy,
    Sample,
    block_medians,
    differing_fields,
    median_ratio_interval,
)

log = logging.getLogger(__name__)
# Latencies are whole nanoseconds: a ratio this close to the threshold counts as reaching it
# (as regression.py's _RATIO_RESOLUTION).
RATIO_RESOLUTION = 1e-4
MIN_SAMPLES = 50   # regression.py's floor: 10 blocks of 5 iterations


class StepVerdict(StrEnum):
    DIFFERENT = "different"        # slower than the good end by at least the threshold
    SAME = "same"                  # a threshold-sized slowdown is excluded
    MEASURE_MORE = "measure more"  # too noisy to answer yet: both sides are measured again
    UNKNOWN = "unknown"            # still too noisy after max_rounds runs each, or not comparable


class BisectStatus(StrEnum):
    RUNNING = "running"            # a partial search, as stored while it runs
    FOUND = "found"
    GOOD_NOT_GOOD = "good-end-not-good"
    BAD_NOT_BAD = "bad-end-not-bad"
    UNKNOWN = "unknown"
    STOPPED = "stopped"            # the board was lost with no other to go on, or an artifact failed


@dataclass(frozen=True)
class BisectPolicy:
    threshold: float = 0.05        # the slowdown that counts as a regression (of the median)
    max_rounds: int = 3            # runs of each side a step may pool before it answers unknown
    regression: RegressionPolicy = field(default_factory=RegressionPolicy)  # alpha, blocks, resamples, seed


@dataclass(frozen=True)
class Measurement:
    """One measured job: which artifact (its position in the sequence), where, and its raw samples."""

    index: int
    board: str
    job_id: str
    sample: Sample


class BoardLost(Exception):
    """The board stopped answering (or someone else holds it) before the job measured."""

    def __init__(self, board: str, reason: str) -> None:
        super().__init__(f"{board}: {reason}")
        self.board, self.reason = board, reason


class ArtifactFailed(Exception):
    """The job failed because of the artifact (bad input, a backend crash, a timeout): no board helps."""


class Measurer(Protocol):
    def measure(self, index: int) -> Measurement:
        """One job of artifact `index` on the current board; raises BoardLost or ArtifactFailed."""

    def next_board(self, lost: BoardLost) -> str | None:
        """The board to go on with after `lost`, or None when there is none."""


@dataclass(frozen=True)
class Judgement:
    verdict: StepVerdict
    ratio: float = float("nan")    # candidate median / good-end median; > 1 is slower
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    reason: str = ""


def judge(reference: Sequence[Sample], candidate: Sequence[Sample], policy: BisectPolicy) -> Judgement:
    """different / same / measure more for the pooled runs of a candidate against the good end's."""
    differing = differing_fields(reference[0].fingerprint, candidate[0].fingerprint)
    if differing:
        return Judgement(StepVerdict.UNKNOWN, reason=f"not comparable: {', '.join(differing)} differ")
    ref, cand = _pooled(reference), _pooled(candidate)
    if min(len(ref), len(cand)) < MIN_SAMPLES:
        return Judgement(StepVerdict.MEASURE_MORE, reason=f"too few samples ({min(len(ref), len(cand))})")
    ratio = float(np.median(cand) / np.median(ref))
    low, high = median_ratio_interval(_pooled_blocks(reference, policy), _pooled_blocks(candidate, policy),
                                      policy.regression)
    return Judgement(_verdict(ratio, low, high, policy.threshold), ratio, low, high,
                     f"median {ratio - 1:+.1%}, interval [{low:.4f}, {high:.4f}]")


def _verdict(ratio: float, low: float, high: float, threshold: float) -> StepVerdict:
    slower = 1 + threshold - RATIO_RESOLUTION
    if ratio >= slower and low > 1:
        return StepVerdict.DIFFERENT
    if high < slower:
        return StepVerdict.SAME
    return StepVerdict.MEASURE_MORE


def _pooled(runs: Sequence[Sample]) -> np.ndarray:
    return np.concatenate([np.asarray(run.samples_ns, dtype=np.float64) for run in runs])


def _pooled_blocks(runs: Sequence[Sample], policy: BisectPolicy) -> np.ndarray:
    """Each run's own block medians, side by side: a block never spans two runs, so the spread
    between runs is in the bootstrap's units."""
    return np.concatenate([block_medians(run.samples_ns, policy.regression.blocks) for run in runs])


@dataclass(frozen=True)
class BisectStep:
    """One verdict, in order: artifact `index` against the good end on `board`, from `rounds` runs of
    the artifact (kind "ends" for the bad end, "step" for a midpoint), or a board lost (kind "board-lost")."""

    kind: str
    index: int
    artifact: str
    verdict: str                   # a StepVerdict's value; "board lost" for kind board-lost
    ratio: float
    ci_low: float
    ci_high: float
    rounds: int
    board: str
    reason: str


@dataclass(frozen=True)
class BisectResult:
    status: BisectStatus
    artifacts: tuple[str, ...]
    good: int                              # positions of the ends in `artifacts`
    bad: int
    bracket: tuple[int, int]               # (last judged same, first judged different) so far
    steps: tuple[BisectStep, ...]
    measured: tuple[tuple[int, str, str], ...]   # (position, board, job id) of every job, in order
    message: str
    threshold: float

    @property
    def first_bad(self) -> int | None:
        """The position of the first artifact that regressed, when the search found it."""
        return self.bracket[1] if self.status is BisectStatus.FOUND else None

    def to_json(self) -> dict:
        return {"status": self.status.value, "message": self.message, "threshold": self.threshold,
                "artifacts": list(self.artifacts), "good": self.good, "bad": self.bad,
                "first_bad": self.first_bad, "bracket": list(self.bracket), "jobs": len(self.measured),
                "steps": [{name: _plain(value) for name, value in asdict(s).items()} for s in self.steps],
                "measured": [{"index": i, "artifact": self.artifacts[i], "board": b, "job_id": j}
                             for i, b, j in self.measured]}

    @classmethod
    def from_json(cls, data: dict) -> BisectResult:
        steps = tuple(BisectStep(**{k: float("nan") if v is None and k.startswith(("ratio", "ci_")) else v
                                    for k, v in s.items()}) for s in data["steps"])
        measured = tuple((m["index"], m["board"], m["job_id"]) for m in data["measured"])
        return cls(BisectStatus(data["status"]), tuple(data["artifacts"]), data["good"], data["bad"],
                   tuple(data["bracket"]), steps, measured, data["message"], data["threshold"])


def _plain(value: object) -> object:
    """JSON has no NaN: an unmeasured ratio is null."""
    return None if isinstance(value, float) and value != value else value


def _unknown(judged: Judgement, rounds: int) -> Judgement:
    return Judgement(StepVerdict.UNKNOWN, judged.ratio, judged.ci_low, judged.ci_high,
                     f"still too noisy after {rounds} run(s) each: {judged.reason}")


def _more(judged: Judgement, why: str) -> Judgement:
    return Judgement(StepVerdict.MEASURE_MORE, judged.ratio, judged.ci_low, judged.ci_high,
                     f"{judged.verdict.value}: {judged.reason}, {why}")


class _Stop(Exception):
    def __init__(self, status: BisectStatus, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Search:
    """The bisection itself. `on_step` sees the partial result after every verdict (to store it)."""

    def __init__(self, artifacts: Sequence[str], measurer: Measurer, policy: BisectPolicy, good: int, bad: int,
                 on_step: Callable[[BisectResult], None] = lambda _: None) -> None:
        self.artifacts, self.measurer, self.policy = tuple(artifacts), measurer, policy
        self.good, self.bad, self.on_step = good, bad, on_step
        self.lo, self.hi = good, bad
        self._runs: dict[int, list[Sample]] = {}     # this board's runs, by position
        self._steps: list[BisectStep] = []
        self._measured: list[tuple[int, str, str]] = []
        self._board = ""

    def run(self) -> BisectResult:
        try:
            self._ends()
            while self.hi - self.lo > 1:
                mid = (self.lo + self.hi) // 2
                if self._step("step", mid).verdict is StepVerdict.DIFFERENT:
                    self.hi = mid
                else:
                    self.lo = mid
        except _Stop as stop:
            return self._result(stop.status, stop.message)
        return self._result(BisectStatus.FOUND, f"{self.artifacts[self.hi]} is the first artifact slower than "
                                                f"{self.artifacts[self.good]} by {self.policy.threshold:.0%} or more")

    def _ends(self) -> None:
        judged = self._step("ends", self.bad)
        good, bad = self.artifacts[self.good], self.artifacts[self.bad]
        if judged.verdict is StepVerdict.DIFFERENT:
            return
        if judged.ratio <= 1 - self.policy.threshold and judged.ci_high < 1:
            raise _Stop(BisectStatus.GOOD_NOT_GOOD, f"the good end {good} is not good: it is slower than the bad "
                                                    f"end {bad} ({judged.reason}); check --good and the order")
        raise _Stop(BisectStatus.BAD_NOT_BAD, f"the bad end {bad} is not bad: it is not {self.policy.threshold:.0%} "
                                              f"slower than the good end {good} ({judged.reason}); nothing to bisect")

    def _step(self, kind: str, index: int) -> Judgement:
        judged = self._judge_on_a_board(kind, index)
        if judged.verdict is StepVerdict.UNKNOWN:
            where = (f"; the first regressed artifact lies in {self.artifacts[self.lo + 1]} .. "
                     f"{self.artifacts[self.hi]}" if kind == "step" else "")
            raise _Stop(BisectStatus.UNKNOWN, f"{self.artifacts[index]} against {self.artifacts[self.good]}: "
                                              f"{judged.reason}{where}; measure longer (--min-seconds) or raise "
                                              "--threshold")
        return judged

    def _judge_on_a_board(self, kind: str, index: int) -> Judgement:
        """The step's verdict; a lost board is replaced and the step starts again on the new one."""
        while True:
            try:
                return self._judge(kind, index)
            except BoardLost as lost:
                self._switch(lost)
            except ArtifactFailed as failed:
                raise _Stop(BisectStatus.STOPPED, f"stopped: {failed}; the search so far is stored") from failed

    def _judge(self, kind: str, index: int) -> Judgement:
        for side in (self.good, index):
            if not self._runs.get(side):
                self._measure(side)
        while True:
            rounds = len(self._runs[index])
            judged, again = self._assess(kind, index, final=rounds >= self.policy.max_rounds)
            self._record(kind, index, judged, rounds)
            if judged.verdict is not StepVerdict.MEASURE_MORE:
                return judged
            for side in again:
                self._measure(side)

    def _assess(self, kind: str, index: int, final: bool) -> tuple[Judgement, tuple[int, ...]]:
        """The verdict, or measure more with the sides to measure again. Every side that does not
        already have more runs than the candidate is measured again, so the pooled runs span the
        same stretch of time."""
        judged = judge(self._runs[self.good], self._runs[index], self.policy)
        again = tuple(side for side in (index, self.good) if side == index or self._fewer(side, index))
        if judged.verdict is StepVerdict.MEASURE_MORE:
            return (_unknown(judged, len(self._runs[index])) if final else judged), again
        if final:
            return judged, ()
        if kind == "ends" and judged.verdict is not StepVerdict.DIFFERENT and len(self._runs[index]) < 2:
            # Ends that do not bracket a regression stop the bisect: one slowed run must not decide that.
            return _more(judged, "the ends do not bracket a regression on one run each; measuring both again"), again
        if kind == "step" and judged.verdict is StepVerdict.DIFFERENT:
            apart = self._apart_from_bad(index)
            if apart:
                return _more(judged, apart), again + ((self.bad,) if self._fewer(self.bad, index) else ())
        return judged, ()

    def _apart_from_bad(self, index: int) -> str:
        """Why a midpoint judged different from the good end is suspect: it is also `threshold` away
        from the bad end. After one step change every artifact is like one end or the other, so this
        is a run a neighbour slowed (or an outlier bad end), unless the change is gradual: then the
        re-measured runs say the same again, and after max_rounds the verdict stands."""
        if not self._runs.get(self.bad):
            self._measure(self.bad)  # a new board: the bad end's runs went with the old one
        bad, mid = self._runs[self.bad], self._runs[index]
        faster = judge(mid, bad, self.policy)    # the bad end against the midpoint
        slower = judge(bad, mid, self.policy)
        if faster.verdict is StepVerdict.DIFFERENT:
            return f"but {1 / faster.ratio - 1:+.1%} against the bad end too; measuring again"
        if slower.verdict is StepVerdict.DIFFERENT:
            return f"but slower than the bad end too ({slower.ratio - 1:+.1%}); measuring again"
        return ""

    def _fewer(self, side: int, than: int) -> bool:
        return len(self._runs.get(side, ())) <= len(self._runs[than])

    def _measure(self, index: int) -> None:
        measured = self.measurer.measure(index)
        self._board = measured.board
        self._runs.setdefault(index, []).append(measured.sample)
        self._measured.append((index, measured.board, measured.job_id))

    def _switch(self, lost: BoardLost) -> None:
        board = self.measurer.next_board(lost)
        note = f"board {lost.board} lost ({lost.reason})"
        if board is None:
            raise _Stop(BisectStatus.STOPPED, f"stopped: {note}, and no other board to go on with; the search "
                                              "so far is stored")
        log.info("%s; going on with %s", note, board)
        self._runs.clear()  # runs on two boards are never compared: the good end is measured again there
        nan = float("nan")
        self._steps.append(BisectStep("board-lost", -1, "", "board lost", nan, nan, nan, 0, lost.board,
                                      f"{note}; going on with {board}"))
        self._publish()

    def _record(self, kind: str, index: int, judged: Judgement, rounds: int) -> None:
        self._steps.append(BisectStep(kind, index, self.artifacts[index], judged.verdict.value, judged.ratio,
                                      judged.ci_low, judged.ci_high, rounds, self._board, judged.reason))
        log.info("%s against %s: %s (%s)", self.artifacts[index], self.artifacts[self.good], judged.verdict.value,
                 judged.reason)
        self._publish()

    def _publish(self) -> None:
        self.on_step(self._result(BisectStatus.RUNNING, "in progress"))

    def _result(self, status: BisectStatus, message: str) -> BisectResult:
        return BisectResult(status, self.artifacts, self.good, self.bad, (self.lo, self.hi), tuple(self._steps),
                            tuple(self._measured), message, self.policy.threshold)
