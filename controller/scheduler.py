"""Planning, as pure functions over plain data: which jobs a matrix makes, and which idle
board takes which pending job. Executing a plan (async, leases, retries) is controller/farm.py."""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


class PlanError(ValueError):
    """A matrix that cannot be planned: an unknown device or pool, an empty pool."""


@dataclass(frozen=True)
class TargetRef:
    """A device by name, or a pool: any device carrying the pool's tags."""
    device: str = ""
    pool: str = ""

    def label(self) -> str:
        return self.device or f"pool:{self.pool}"


@dataclass(frozen=True)
class PlannedJob:
    model: str
    recipe: str
    target: str                       # the TargetRef label, for messages and resume
    candidates: tuple[str, ...]       # device names that may run it

    @property
    def key(self) -> str:
        return f"{self.model}|{self.recipe}|{self.target}"


def candidates_for(target: TargetRef, devices: Mapping[str, Mapping[str, str]],
                   pools: Mapping[str, Mapping[str, str]]) -> tuple[str, ...]:
    """devices: name → tags; pools: name → required tags."""
    if target.device:
        if target.device not in devices:
            raise PlanError(f"unknown device {target.device!r}; valid devices: {', '.join(sorted(devices))}")
        return (target.device,)
    if target.pool not in pools:
        raise PlanError(f"unknown pool {target.pool!r}; valid pools: {', '.join(sorted(pools)) or '(none defined)'}")
    wanted = pools[target.pool]
    members = tuple(name for name, tags in devices.items() if all(tags.get(k) == v for k, v in wanted.items()))
    if not members:
        raise PlanError(f"pool {target.pool!r} ({_tags(wanted)}) matches no device")
    return members


def expand(models: Sequence[str], recipes: Sequence[str], targets: Sequence[TargetRef],
           devices: Mapping[str, Mapping[str, str]], pools: Mapping[str, Mapping[str, str]]) -> list[PlannedJob]:
    """models × recipes × targets, in that order; duplicates dropped."""
    jobs: dict[str, PlannedJob] = {}
    for target in targets:
        members = candidates_for(target, devices, pools)
        for model in models:
            for recipe in recipes:
                job = PlannedJob(model, recipe, target.label(), members)
                jobs.setdefault(job.key, job)
    return list(jobs.values())


def assign(pending: Sequence[PlannedJob], idle: Collection[str]) -> list[tuple[PlannedJob, str]]:
    """Give each idle device at most one pending job it can run; one job goes to one device.

    Most-constrained jobs first (fewest candidates), so a job pinned to one board is not
    starved by pool jobs that any board could take; ties keep the plan's order.
    """
    free = [d for d in idle]
    out: list[tuple[PlannedJob, str]] = []
    for job in sorted(pending, key=lambda j: len(j.candidates)):
        device = next((d for d in free if d in job.candidates), None)
        if device is not None:
            free.remove(device)
            out.append((job, device))
    return out


def _tags(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
