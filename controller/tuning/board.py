"""Measuring a tune's candidates on one board: each batch of candidates is a real job per candidate
through the one executor (FarmRunner, as `edgefarm run`), stored as a normal job and result of the
tune's run, so `edgefarm report` and `edgefarm diff` read a tune as any run."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.recipes import Variant
from edgefarm.controller.config.inventory import BackendSettings, Device
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm import TRANSPORT, FarmJob, FarmRunner, RetryPolicy
from edgefarm.controller.execution.prepare import variant_record
from edgefarm.controller.leases import LeaseError, LeaseManager, default_owner
from edgefarm.controller.planning.backends import artifact_format
from edgefarm.controller.planning.job_inputs import JobInputs
from edgefarm.controller.planning.run_plan import MeasureSettings
from edgefarm.controller.planning.scheduler import PlannedJob
from edgefarm.controller.results.store import JobRecord, ResultStore, StoredResult
from edgefarm.controller.tuning.space import Candidate

# One retry of a transport failure, then the board counts as lost (as bisect). No quarantine: an
# engineer's variant crashing says nothing about a shared board.
TUNE_BOARD = RetryPolicy(attempts=2, backoff_s=0.5, quarantine_after=1_000_000, wait_for_leases=False)
BOARD_FAULTS = (TRANSPORT, "infrastructure")
BRIEF = " [brief]"


class BoardLost(RuntimeError):
    """The board stopped answering (or someone else took it) mid-tune."""


@dataclass(frozen=True)
class Built:
    """A candidate's variant as compressed on the controller, with its host fidelity."""

    variant: Variant
    fidelity: dict
    inputs: JobInputs


class BoardMeasurer:
    """Runs batches of candidates on one board; counts every job it sends."""

    def __init__(self, store: ResultStore, run_id: str, board: Device, leases: LeaseManager, ui: RunConsole,
                 eval_npz: Path | None) -> None:
        self.store, self.run_id, self.board, self.leases, self.ui = store, run_id, board, leases, ui
        self.eval_npz, self.eval_sha = eval_npz, sha256_file(eval_npz) if eval_npz else ""
        self.jobs = 0

    def measure(self, batch: Sequence[tuple[Candidate, Built]], measure: MeasureSettings,
                brief: bool) -> dict[Candidate, StoredResult]:
        """One job per candidate; a candidate whose job failed (its runtime crashed) is left out."""
        by_threads: dict[int, list[tuple[Candidate, Built]]] = {}
        for candidate, built in batch:
            by_threads.setdefault(candidate.threads, []).append((candidate, built))
        measured: dict[Candidate, StoredResult] = {}
        for threads, group in sorted(by_threads.items()):
            measured.update(self._batch(threads, group, measure, brief))
        return measured

    def _batch(self, threads: int, group: list[tuple[Candidate, Built]], measure: MeasureSettings,
               brief: bool) -> dict[Candidate, StoredResult]:
        jobs = {c: self._job(c, b, brief) for c, b in group}
        self.jobs += len(jobs)
        runner = FarmRunner(self.store, self.leases, {self.board.name: self._with_threads(threads)}, measure,
                            self.ui, owner=f"{default_owner()}/{self.run_id}", policy=TUNE_BOARD, single_board=True)
        try:
            outcome = asyncio.run(runner.run(list(jobs.values())))
        except LeaseError as exc:  # someone else holds the board, or the lease database failed
            raise BoardLost(f"{self.board.name}: {exc}") from exc
        lost = [end for end in outcome.failed if end.kind in BOARD_FAULTS]
        if lost:
            raise BoardLost(f"{self.board.name}: {lost[0].kind}: {lost[0].message}")
        stored = {r.job.id: r for r in self.store.results(self.run_id)}
        return {c: stored[job.record.id] for c, job in jobs.items() if job.record.id in stored}

    def _job(self, candidate: Candidate, built: Built, brief: bool) -> FarmJob:
        label = candidate.label + (BRIEF if brief else "")
        variant = replace(built.variant, recipe=label)
        self.store.add_variant(self.run_id, variant_record(variant, built.fidelity))
        path = variant.path
        planned = PlannedJob(variant.model, label, self.board.name, (self.board.name,), artifact_format(path),
                             candidate.backend)
        record = JobRecord(uuid.uuid4().hex, self.run_id, variant.model, label, self.board.name, "", variant.sha256)
        self.store.add_job(record)
        return FarmJob(planned, record, path, self.eval_npz, self.eval_sha, inputs=built.inputs.for_artifact(path))

    def _with_threads(self, threads: int) -> Device:
        settings = {name: replace(self.board.backend_options.get(name, BackendSettings(name)), threads=threads)
                    for name in self.board.backends}
        return replace(self.board, backend_options=settings)
