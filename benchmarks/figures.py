"""A benchmark figure and how it is printed and stored."""
from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass
from pathlib import Path

_COMPARE = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt}
NO_GOAL = "none"


@dataclass(frozen=True)
class Figure:
    id: str
    name: str
    value: float
    unit: str
    reference: str          # what the value was measured against, in this same run
    goal: str               # e.g. "<= 1.05", a range "0.8-1.1", or "none": a figure shown for context

    def meets_goal(self) -> bool:
        if self.goal == NO_GOAL:
            return True
        op, _, bound = self.goal.partition(" ")
        if op not in _COMPARE:   # a range: low-high, both ends included
            low, _, high = self.goal.partition("-")
            return float(low) <= self.value <= float(high)
        return _COMPARE[op](self.value, float(bound))

    def line(self) -> str:
        verdict = "(context)" if self.goal == NO_GOAL else "meets goal" if self.meets_goal() else "MISSES goal"
        return (f"{self.id:<18} {self.name:<44} {self.value:>9.4g} {self.unit:<6} goal {self.goal:<8} "
                f"{verdict}   [{self.reference}]")


def write_results(figures: list[Figure], path: Path) -> None:
    """Merge into results.json by id, so benchmarks added later keep earlier ids' figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = {f["id"]: f for f in json.loads(path.read_text())} if path.exists() else {}
    existing.update({f.id: asdict(f) for f in figures})
    path.write_text(json.dumps(list(existing.values()), indent=2) + "\n")
