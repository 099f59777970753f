"""What `Farm.tune` returns: every measured candidate, the Pareto front and recommendation per board,
the deployment card, the host checks and the hardware-aware mixed-precision decisions. Building one
never measures: the candidates were measured by the farm's executor and are stored with the run."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from edgefarm.controller.tuning import front as fronts

if TYPE_CHECKING:
    from edgefarm.controller.tuning.tune_run import TuneOutcome

EXIT_OK, EXIT_NO_CANDIDATE = 0, 1
SHOWN = ("device", "candidate", "stage", "latency_p50_ms", "latency_p99_ms", "quality", "drop_points", "size_bytes")


@dataclass(frozen=True)
class Tuning:
    """A tune of one model: stored as run `run_id` (kind "tune"); every measurement is a normal result.

    frame: one row per board measurement (stage brief, full or hwmp). front: the fully measured rows no
    other beats on latency, quality and size at once, per board. cards: the recommended variant of each
    board within the budget (empty when none meets it; `closest` then shows the nearest candidates).

    Example:
        >>> t = farm.tune("mobilenet-v2", max_drop=1.0)
        >>> t.front[["candidate", "latency_p50_ms", "drop_points", "size_bytes"]]
        >>> print(t.cards[0].reproduce)
    """

    run_id: str
    db: str
    objective: str
    max_drop: float
    frame: pd.DataFrame
    checks: pd.DataFrame
    decisions: pd.DataFrame
    cards: tuple[fronts.DeploymentCard, ...]
    jobs: int
    stopped: tuple[str, ...]
    lost: tuple[str, ...]
    hwmp: tuple[str, ...]

    @classmethod
    def of(cls, outcome: TuneOutcome, db: str, where: str, data_flags: tuple[str, ...]) -> Tuning:
        rows = [r for b in outcome.boards for r in b.rows]
        frame = pd.DataFrame(rows)
        decisions = pd.DataFrame([{"device": b.board, **asdict(d)} for b in outcome.boards for d in b.decisions])
        cards = []
        for b in outcome.boards:
            board_rows = frame[frame["device"] == b.board] if not frame.empty else frame
            best = fronts.recommend(board_rows, outcome.config.objective, outcome.config.max_drop) \
                if not board_rows.empty else None
            if best is not None:
                cards.append(fronts.card(best, _fingerprint(b.info, best), where, data_flags))
        return cls(outcome.run_id, db, outcome.config.objective, outcome.config.max_drop, frame,
                   pd.DataFrame([asdict(c) for c in outcome.checks]), decisions, tuple(cards),
                   sum(b.jobs for b in outcome.boards), tuple(f"{b.board}: {b.stopped}" for b in outcome.boards),
                   outcome.lost, tuple(f"{b.board}: {b.hwmp_note}" for b in outcome.boards))

    @property
    def front(self) -> pd.DataFrame:
        """The measured Pareto front of each board (latency vs quality vs size), fastest first."""
        if self.frame.empty:
            return self.frame
        return pd.concat([fronts.pareto(fronts.confirmed(g)) for _, g in self.frame.groupby("device", sort=False)])

    @property
    def closest(self) -> pd.DataFrame:
        """The candidates nearest the budget (by quality drop), for when none meets it."""
        return fronts.closest(fronts.confirmed(self.frame)) if not self.frame.empty else self.frame

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.cards else EXIT_NO_CANDIDATE

    @property
    def message(self) -> str:
        if self.cards:
            c = self.cards[0]
            return (f"recommended on {c.device}: {c.recipe} on {c.backend} with {c.options['threads']} thread(s), "
                    f"p50 {c.p50_ms:.3f} ms, drop {c.drop_points or 0:.2f} points (budget {self.max_drop:g})")
        nearest = [f"{r.candidate} (drop {r.drop_points:.2f})" for r in self.closest.itertuples()]
        if not nearest and not self.checks.empty:   # every candidate was over the budget on the host
            host = self.checks.dropna(subset=["drop_points"]).sort_values("drop_points").head(3)
            nearest = [f"{r.recipe} (drop {r.drop_points:.2f} on the host)" for r in host.itertuples()]
        return (f"no candidate meets --max-drop {self.max_drop:g}: the closest are " + "; ".join(nearest)
                + "; allow a larger --max-drop or add recipes (--recipes)")

    def to_json(self) -> dict:
        front = self.front
        return {"run_id": self.run_id, "db": self.db, "objective": self.objective, "max_drop": self.max_drop,
                "jobs": self.jobs, "stopped": list(self.stopped), "lost": list(self.lost), "hwmp": list(self.hwmp),
                "front": _records(front, SHOWN + ("job_id", "threads", "backend")),
                "cards": [asdict(c) for c in self.cards], "checks": self.checks.to_dict("records"),
                "decisions": self.decisions.to_dict("records"), "exit_code": self.exit_code,
                "message": self.message}

    def write_html(self, path: str | Path) -> Path:
        from edgefarm.controller.tuning.page import write_tune_page

        return write_tune_page(self, Path(path))

    def _repr_html_(self) -> str:
        from edgefarm.controller.tuning.page import tune_body

        return tune_body(self)


def _records(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[dict]:
    present = [c for c in columns if c in frame.columns]
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame[present].to_dict("records")]


def _fingerprint(info, row: pd.Series) -> dict:
    runtimes = {r.name: r.version for r in info.runtimes}
    return {"cpu": info.cpu_model, "cores": info.cpu_cores, "os": info.os, **runtimes,
            "throttled": bool(row.get("throttled", False))}
