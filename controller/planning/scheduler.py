"""Planning, as pure functions over plain data: which jobs a matrix makes, and which idle
board takes which pending job. Executing a plan (async, leases, retries) is controller/execution/farm.py."""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from edgefarm.controller.planning.backends import can_run


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
    candidates: tuple[str, ...]       # device names that may run it (and have a backend for it)
    artifact_format: str = ".onnx"    # what the recipe writes: with a board's backends it picks the backend
    backend: str = ""                 # pinned by the matrix; "" = the board's preferred one (planning/backends.py)

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
           devices: Mapping[str, Mapping[str, str]], pools: Mapping[str, Mapping[str, str]],
           backends: Mapping[str, Collection[str]] | None = None,
           format_of: Callable[[str, str], str] | None = None) -> list[PlannedJob]:
    """models × recipes × targets, in that order; duplicates dropped. With `backends` (device → the
    backends it has) and `format_of` (model, recipe → ".onnx"), a job's candidates are only the
    boards with a backend for its artifact, and a target with none is refused here, before any work."""
    jobs: dict[str, PlannedJob] = {}
    for target in targets:
        members = candidates_for(target, devices, pools)
        for model in models:
            for recipe in recipes:
                fmt = format_of(model, recipe) if format_of else ".onnx"
                able = members if backends is None else _able(target, members, backends, fmt)
                job = PlannedJob(model, recipe, target.label(), able, fmt)
                jobs.setdefault(job.key, job)
    return list(jobs.values())


def _able(target: TargetRef, members: tuple[str, ...], backends: Mapping[str, Collection[str]],
          fmt: str) -> tuple[str, ...]:
    able = tuple(name for name in members if can_run(backends[name], fmt))
    if not able:
        have = "; ".join(f"{name}: {', '.join(backends[name]) or 'none'}" for name in members)
        raise PlanError(f"{target.label()} has no board with a backend for {fmt} files ({have}); "
                        "add one to the board's backends in devices.yaml or pick another target")
    return able


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
