"""A farm run end to end: matrix → plan → variants → fan-out over leased boards → store.
Its configuration is stored with the run, so `edgefarm resume RUN_ID` can finish an
interrupted run without redoing the jobs already done."""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.recipes import Variant, compress
from edgefarm.controller.config.inventory import Inventory, load_inventory
from edgefarm.controller.config.matrix import Matrix, load_matrix
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm import FarmJob, FarmOutcome, FarmRunner, RetryPolicy
from edgefarm.controller.execution.prepare import (
    host_fidelity_stats,
    job_inputs,
    model_source,
    prebuilt_variant,
    variant_record,
)
from edgefarm.controller.leases import LeaseError, LeaseManager, default_owner, open_lease_manager
from edgefarm.controller.planning.backends import artifact_format
from edgefarm.controller.planning.job_inputs import JobInputs
from edgefarm.controller.planning.run_plan import RunPlan, Target, model_name, prebuilt_format
from edgefarm.controller.planning.scheduler import PlanError, PlannedJob, expand
from edgefarm.controller.results.liveness import ABANDONED_AFTER_S, BEAT_S
from edgefarm.controller.results.store import JobRecord, ResultStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FarmRunConfig:
    """Everything needed to (re)build a farm run; stored as the run's plan."""
    matrix: str
    devices: str
    leases: str
    cache_dir: str


@dataclass(frozen=True)
class PreparedVariant:
    variant: Variant
    eval_npz: Path | None
    inputs: JobInputs


@dataclass(frozen=True)
class FarmRunResult:
    run_id: str
    outcome: FarmOutcome
    interrupted: bool


class FarmRun:
    def __init__(self, config: FarmRunConfig, store: ResultStore, ui: RunConsole,
                 policy: RetryPolicy | None = None) -> None:
        self.config, self.store, self.ui, self.policy = config, store, ui, policy or RetryPolicy()
        self.matrix: Matrix = load_matrix(Path(config.matrix))
        self.inventory: Inventory = load_inventory(Path(config.devices))
        self.planned = expand(self.matrix.models, self.matrix.recipes, self.matrix.targets,
                              {d.name: d.tags for d in self.inventory}, self.inventory.pools,
                              backends={d.name: d.backends for d in self.inventory}, format_of=planned_format)

    def start(self, kind: str = "nightly", only: Mapping[str, str | None] | None = None,
              baseline: str | None = None) -> FarmRunResult:
        """A new run of the whole matrix, or only of the planned jobs whose keys are in `only`, each
        pinned to the board `only` maps it to (a suspect's re-run goes to the suspect's board).
        baseline: the run a night compares against, stored with its plan so a resume uses it too."""
        plan = {**asdict(self.config), **({"baseline": baseline} if baseline else {})}
        run_id = self.store.new_run(f"farm {self.config.matrix}", kind, plan=plan)
        planned = [_pinned(p, only[p.key]) if only is not None else p
                   for p in self.planned if only is None or p.key in only]
        with self.store.heartbeat(run_id):
            variants = self._variants(run_id, planned)
            jobs = [self._new_job(run_id, p, variants[(p.model, p.recipe)]) for p in planned]
            return self._execute(run_id, jobs)

    def resume(self, run_id: str) -> FarmRunResult:
        """Finish an interrupted or abandoned run; the leases its dead controller still holds are taken over."""
        if self.store.run_status(run_id) == "running":
            raise PlanError(f"run {run_id} is still running: its controller beats every {BEAT_S:g} s; resume "
                            f"takes over a run once it is interrupted, or abandoned (no beat for "
                            f"{ABANDONED_AFTER_S:g} s, or its process gone)")
        self.store.take_over(run_id)
        with self.store.heartbeat(run_id):
            return self._resume(run_id)

    def _resume(self, run_id: str) -> FarmRunResult:
        by_key = {(model_name(p.model), p.recipe, p.target): p for p in self.planned}
        unfinished = self.store.unfinished_jobs(run_id)
        gone = [f"{r.model}/{r.variant} on {target}" for r, target in unfinished
                if (r.model, r.variant, target) not in by_key]
        if gone:
            raise PlanError(f"run {run_id}: {', '.join(gone)} no longer in {self.config.matrix}; "
                            "restore the matrix file as it was, or start a new run")
        planned = [by_key[(r.model, r.variant, target)] for r, target in unfinished]
        variants = self._variants(run_id, planned)
        jobs = [self._farm_job(p, r, variants[(p.model, p.recipe)])
                for p, (r, _) in zip(planned, unfinished, strict=True)]
        self.ui.note(f"resuming {run_id}: {len(jobs)} job(s) left to run")
        return self._execute(run_id, jobs, reclaim=f"/{run_id}")   # its leases' owner: user@host/RUN_ID

    def _variants(self, run_id: str, planned: list[PlannedJob]) -> dict[tuple[str, str], PreparedVariant]:
        out: dict[tuple[str, str], PreparedVariant] = {}
        inputs: dict[str, JobInputs] = {}
        for model, recipe in dict.fromkeys((p.model, p.recipe) for p in planned):
            plan = self._plan(model, recipe)
            source = model_source(plan, self.ui)
            if model not in inputs:  # refuses unresolved shapes before this model is compressed
                inputs[model] = job_inputs(plan, source)
            variant = prebuilt_variant(plan, source) if source.bundle is None else \
                compress(source.bundle, recipe, plan.cache_dir, progress=self.ui.phase_bar(f"compress {recipe}"))
            self.store.add_variant(run_id, variant_record(variant, host_fidelity_stats(variant, inputs[model])))
            out[(model, recipe)] = PreparedVariant(variant, source.eval_npz, inputs[model].for_artifact(variant.path))
        return out

    def _plan(self, model: str, recipe: str) -> RunPlan:
        feed = self.matrix.feed_of(model)
        return RunPlan(model, (recipe,), Target("farm", None), Path(self.config.cache_dir), self.matrix.measure,
                       shapes=feed.shapes, inputs_npz=Path(feed.inputs) if feed.inputs else None)

    def _new_job(self, run_id: str, planned: PlannedJob, prepared: PreparedVariant) -> FarmJob:
        v = prepared.variant
        record = JobRecord(uuid.uuid4().hex, run_id, v.model, v.recipe, planned.target, "", v.sha256)
        self.store.add_job(record, target=planned.target)
        return self._farm_job(planned, record, prepared)

    @staticmethod
    def _farm_job(planned: PlannedJob, record: JobRecord, prepared: PreparedVariant) -> FarmJob:
        eval_npz = prepared.eval_npz
        return FarmJob(planned, record, prepared.variant.path, eval_npz, sha256_file(eval_npz) if eval_npz else "",
                       inputs=prepared.inputs)

    def _execute(self, run_id: str, jobs: list[FarmJob], reclaim: str = "") -> FarmRunResult:
        leases = open_lease_manager(self.config.leases)
        if reclaim:
            self._say_taken_over(leases, reclaim)
        runner = FarmRunner(self.store, leases, {d.name: d for d in self.inventory}, self.matrix.measure,
                            self.ui, owner=f"{default_owner()}/{run_id}", policy=self.policy,
                            reclaim=reclaim)
        try:
            with self.ui.live():
                outcome = asyncio.run(runner.run(jobs))
        except KeyboardInterrupt:
            self.store.finish_run(run_id, "interrupted")
            return FarmRunResult(run_id, FarmOutcome(), interrupted=True)
        except LeaseError:
            self.store.finish_run(run_id, "failed")  # what was measured stays; resume can finish it
            raise
        finally:
            leases.close()
        self.store.finish_run(run_id, "done" if not outcome.failed else "partial")
        return FarmRunResult(run_id, outcome, interrupted=False)

    def _say_taken_over(self, leases: LeaseManager, reclaim: str) -> None:
        held = [state for state in leases.states(self.inventory.names())
                if state.lease is not None and state.lease.owner.endswith(reclaim)]
        if held:
            boards = ", ".join(f"{s.device} ({s.expires_in_s:.0f} s left)" for s in held)
            log.info("taking over the abandoned run's leases on %s", boards)
            self.ui.note(f"taking over the abandoned run's leases on {boards}")


def planned_format(model: str, recipe: str) -> str:
    """The artifact format a (model, recipe) job ships: a prebuilt .tflite as is, else what the recipe writes."""
    from edgefarm.compressors.errors import UnknownRecipeError
    from edgefarm.compressors.recipes import get_recipe

    prebuilt = prebuilt_format(model)
    if prebuilt:
        return prebuilt
    try:
        return artifact_format(get_recipe(recipe).artifact)
    except UnknownRecipeError:  # a recipe of the matrix's own recipe file: ONNX steps, checked when compressed
        return ".onnx"


def _pinned(planned: PlannedJob, device: str | None) -> PlannedJob:
    if device is None:
        return planned
    if device not in planned.candidates:
        raise PlanError(f"{planned.key}: board {device} is not among its candidates {', '.join(planned.candidates)}")
    return replace(planned, candidates=(device,))
