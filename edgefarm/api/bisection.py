"""What `Farm.bisect` returns: the search over a sequence of artifacts, as a frozen record with a
DataFrame of its verdicts. Building one never measures: the steps were measured by the farm's
executor and are stored with the run."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from edgefarm.controller.nightly.bisect import BisectResult, BisectStatus, BisectStep

# `edgefarm bisect` exits with these (its --help and docs/nightly.md say the same).
EXIT_FOUND, EXIT_BAD_ENDS, EXIT_INCOMPLETE = 0, 2, 3
_EXIT = {BisectStatus.FOUND: EXIT_FOUND, BisectStatus.GOOD_NOT_GOOD: EXIT_BAD_ENDS,
         BisectStatus.BAD_NOT_BAD: EXIT_BAD_ENDS}
STEP_COLUMNS = ("kind", "index", "artifact", "verdict", "ratio", "ci_low", "ci_high", "rounds", "board", "reason")


@dataclass(frozen=True)
class Bisection:
    """A bisect over an ordered sequence of artifacts: which one first regressed against the good end,
    and every verdict on the way, in order. Stored as run `run_id` (kind "bisect"): every job is a
    normal stored result, and the search is the run's plan.

    status: found, good-end-not-good, bad-end-not-bad, unknown (too noisy after the rounds allowed)
    or stopped (the board was lost with no other to go on with, or an artifact failed to run).

    Example:
        >>> b = farm.bisect("checkpoints/", device="jetson-orin-01", threshold=0.05)
        >>> b.status, b.first_bad, b.jobs
        ('found', 'ckpt-12.onnx', 7)
        >>> b.frame[["artifact", "verdict", "ratio", "rounds"]]
    """

    run_id: str
    db: str
    status: str
    artifacts: tuple[str, ...]
    good: str
    bad: str
    first_bad: str | None       # the first artifact that regressed, when found
    last_good: str | None       # the artifact before it (or the last judged the same, when not found)
    steps: tuple[BisectStep, ...]
    measured: tuple[tuple[str, str, str], ...]   # (artifact, board, job id) of every job, in order
    message: str
    threshold: float

    @classmethod
    def of(cls, run_id: str, db: str, result: BisectResult) -> Bisection:
        names = result.artifacts
        ends_bracket = result.status in (BisectStatus.FOUND, BisectStatus.UNKNOWN, BisectStatus.STOPPED)
        last_good = names[result.bracket[0]] if ends_bracket and _ends_judged(result) else None
        return cls(run_id, db, result.status.value, names, names[result.good], names[result.bad],
                   names[result.first_bad] if result.first_bad is not None else None, last_good, result.steps,
                   tuple((names[i], board, job) for i, board, job in result.measured), result.message,
                   result.threshold)

    @property
    def jobs(self) -> int:
        """How many jobs were measured (the ends, each step, and every extra round)."""
        return len(self.measured)

    @property
    def exit_code(self) -> int:
        """What `edgefarm bisect` exits with: 0 found, 2 the ends do not bracket a regression,
        3 unknown or stopped."""
        return _EXIT.get(BisectStatus(self.status), EXIT_INCOMPLETE)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per verdict (or board lost), in order."""
        return pd.DataFrame([{c: getattr(s, c) for c in STEP_COLUMNS} for s in self.steps], columns=list(STEP_COLUMNS))

    def summary(self) -> str:
        return f"{self.status}: {self.message} ({self.jobs} jobs, run {self.run_id})"

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "first_bad": self.first_bad, "last_good": self.last_good,
                "good": self.good, "bad": self.bad, "threshold": self.threshold, "jobs": self.jobs,
                "message": self.message, "artifacts": list(self.artifacts),
                "steps": self.frame.astype(object).where(self.frame.notna(), None).to_dict("records"),
                "measured": [{"artifact": a, "board": b, "job_id": j} for a, b, j in self.measured]}

    def _repr_html_(self) -> str:
        return (f"<p>bisect {html.escape(self.run_id)}: <b>{html.escape(self.status)}</b>: "
                f"{html.escape(self.message)}</p>" + self.frame.to_html(index=False, na_rep=""))


def _ends_judged(result: BisectResult) -> bool:
    return any(step.kind == "ends" and step.verdict == "different" for step in result.steps)


def artifacts_argument(artifacts: str | Path | list | tuple) -> tuple[str, ...]:
    """A directory, a comma list, or a sequence of paths, as the config stores it."""
    if isinstance(artifacts, str | Path):
        return (str(artifacts),)
    return tuple(str(a) for a in artifacts)
