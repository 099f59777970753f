"""The search on one board: successive halving over groups of candidates that run the same kernels.

Rung 0 measures one representative of every (kernel signature, backend) group briefly, at the board's
full thread count and with a per-layer profile. Groups are ranked by the objective; the leading third
(at least two) are measured fully, the first at every thread count and the rest at the count that won.
Then the next group in rank order that the front does not already beat is promoted, while the last
promotion moved the front, until it stops moving or --max-jobs is reached. The
hardware-aware mixed-precision variant is built from rung 0's fp32 and int8 profiles and measured
fully; it stays if it lands on the front."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from edgefarm.controller.planning.run_plan import MeasureSettings
from edgefarm.controller.results.frame import result_row
from edgefarm.controller.results.store import StoredResult
from edgefarm.controller.tuning import front as fronts
from edgefarm.controller.tuning.board import BoardMeasurer, Built
from edgefarm.controller.tuning.space import Candidate, kernel_signature, routes

log = logging.getLogger(__name__)
BRIEF = MeasureSettings(warmup_iterations=5, warmup_seconds=0.1, min_iterations=20, min_seconds=0.3, profile=True)
BRIEF_MARGIN = 1.25   # a brief (0.3 s) p50 on a shared machine can be this far off the full one
KEEP_SHARE = 3   # rung 0 → rung 1 keeps the leading 1/3 of the groups (successive halving with eta 3)


@dataclass(frozen=True)
class Group:
    """Candidates that run the same kernels on one route: one measurement ranks them all."""

    backend: str
    labels: tuple[str, ...]        # recipe labels, most accurate first


@dataclass
class SearchState:
    rows: list[dict] = field(default_factory=list)
    brief: dict[str, StoredResult] = field(default_factory=dict)   # recipe label → its rung-0 result
    stopped: str = ""


def groups(built: dict[str, Built], quality: Callable[[Built], float], board_backends: Sequence[str],
           wanted: Sequence[str] | None) -> list[Group]:
    by_key: dict[tuple[str, str], list[str]] = {}
    for label, b in built.items():
        for backend in routes(b.variant.path, board_backends, wanted):
            by_key.setdefault((kernel_signature(b.variant.path), backend), []).append(label)
    return [Group(backend, tuple(sorted(labels, key=lambda name: -quality(built[name]))))
            for (_, backend), labels in by_key.items()]


class Search:
    def __init__(self, measurer: BoardMeasurer, built: dict[str, Built], threads: Sequence[int],
                 objective: str, max_drop: float, max_jobs: int | None, full: MeasureSettings,
                 baseline_quality: float | None) -> None:
        self.m, self.built, self.threads, self.objective = measurer, built, tuple(threads), objective
        self.max_drop, self.max_jobs, self.full, self.base = max_drop, max_jobs, full, baseline_quality
        self.state = SearchState()

    def run(self, found: list[Group]) -> SearchState:
        ranked = self._rung0(found)
        promote = max(2, math.ceil(len(ranked) / KEEP_SHARE))
        for group in ranked[:promote]:
            if not self._full(group):
                return self.state
        for group in ranked[promote:]:
            if self._dominated(group):
                continue
            before = self._front_labels()
            if not self._full(group):
                return self.state
            if self._front_labels() == before:
                self.state.stopped = f"the front stopped moving after {group.labels[0]}"
                return self.state
        self.state.stopped = self.state.stopped or "every group measured"
        return self.state

    def run_exhaustive(self, found: list[Group]) -> SearchState:
        """Every candidate measured fully, no ranking: the reference the search is judged against (T1)."""
        for group in found:
            for label in group.labels:
                batch = [(Candidate(label, group.backend, t), self.built[label]) for t in self.threads]
                for candidate, stored in self.m.measure(batch, replace(self.full, profile=True), brief=False).items():
                    self.state.brief.setdefault(candidate.recipe, stored)
                    self._add(candidate, stored, "full")
        self.state.stopped = "exhaustive: every candidate measured"
        return self.state

    def _rung0(self, found: list[Group]) -> list[Group]:
        top = max(self.threads)
        batch = [(Candidate(g.labels[0], g.backend, top), self.built[g.labels[0]]) for g in found]
        batch = batch[:self._room(len(batch))]
        measured = self.m.measure(batch, BRIEF, brief=True)
        for candidate, stored in measured.items():
            self.state.brief[candidate.recipe] = stored
            self._add(candidate, stored, "brief")
        key = {g: self._brief_value(g) for g in found if g.labels[0] in self.state.brief}
        return sorted(key, key=key.get)

    def _dominated(self, group: Group) -> bool:
        """A group that a front member beats on quality and size, and on latency by more than the brief
        measurement's margin, cannot land on the front: it is not promoted."""
        brief = result_row(self.state.brief[group.labels[0]])
        built = self.built[group.labels[0]]
        own = fronts.quality_columns(built, self.base)["quality"]
        frame = pd.DataFrame(self.state.rows)
        front = fronts.pareto(fronts.confirmed(frame)) if not frame.empty else frame
        return any(r["quality"] >= own and r["size_bytes"] <= built.variant.size_bytes
                   and r["latency_p50_ms"] * BRIEF_MARGIN < brief["latency_p50_ms"] for r in front.to_dict("records"))

    def _brief_value(self, group: Group) -> float:
        row = result_row(self.state.brief[group.labels[0]])
        return fronts.objective_value(row, self.objective)

    def _full(self, group: Group) -> bool:
        """The group's most accurate variant, fully: at every thread count for the first group, then at
        the thread count that won there (thread scaling is a property of the board and model far more than
        of the variant). False when --max-jobs is reached."""
        label = group.labels[0]
        threads = self._winning_threads() or self.threads
        batch = [(Candidate(label, group.backend, t), self.built[label]) for t in threads]
        room = self._room(len(batch))
        if room < len(batch):
            self.state.stopped = f"--max-jobs {self.max_jobs} reached"
        if room:
            for candidate, stored in self.m.measure(batch[:room], self.full, brief=False).items():
                self._add(candidate, stored, "full")
        return room == len(batch)

    def _winning_threads(self) -> tuple[int, ...]:
        full = [r for r in self.state.rows if r["stage"] == "full"]
        return (min(full, key=lambda r: r["latency_p50_ms"])["threads"],) if full else ()

    def measure_extra(self, candidate: Candidate, built: Built, stage: str) -> bool:
        """A variant built during the search (hw-mixed-int8), measured fully."""
        if not self._room(1):
            return False
        self.built[candidate.recipe] = built
        for c, stored in self.m.measure([(candidate, built)], self.full, brief=False).items():
            self._add(c, stored, stage)
        return True

    def _room(self, wanted: int) -> int:
        if self.max_jobs is None:
            return wanted
        return max(0, min(wanted, self.max_jobs - self.m.jobs))

    def _add(self, candidate: Candidate, stored: StoredResult, stage: str) -> None:
        row = result_row(stored)
        built = self.built[candidate.recipe]
        row.update(job_id=stored.job.id, candidate=candidate.label, recipe=candidate.recipe,
                   params=dict(built.variant.params), threads=candidate.threads, stage=stage,
                   artifact_sha256=built.variant.sha256)
        row.update(fronts.quality_columns(built, self.base))
        self.state.rows.append(row)

    def _front_labels(self) -> frozenset[str]:
        frame = pd.DataFrame(self.state.rows)
        if frame.empty:
            return frozenset()
        return frozenset(fronts.pareto(fronts.confirmed(frame))["candidate"])
