"""`edgefarm bisect` on boards: the search (controller/nightly/bisect.py) asks for one job at a time,
and each is a real job through the one executor (FarmRunner on one board, as `edgefarm run`),
stored as a normal job and result of a run of kind "bisect". The search itself is stored as the
run's plan after every verdict, so a bisect that stops leaves its partial search in the store.

Every artifact is a variant of the run (model: the sequence's name, variant: the artifact's label),
so `edgefarm report RUN_ID` and (with --profile) `edgefarm diff RUN:ckpt-04.onnx RUN:ckpt-05.onnx`
read it as any run.
"""
from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgefarm.controller.agents.client import AgentUnreachableError
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm import TRANSPORT, FarmJob, FarmOutcome, FarmRunner, RetryPolicy
from edgefarm.controller.execution.prepare import job_inputs
from edgefarm.controller.execution.single_run import boards_named, leases_for, probe
from edgefarm.controller.leases import LeaseError, LeaseManager, default_owner
from edgefarm.controller.nightly.bisect import (
    ArtifactFailed,
    BisectPolicy,
    BisectResult,
    BisectStatus,
    BoardLost,
    Measurement,
    Search,
)
from edgefarm.controller.nightly.regression import BenchmarkKey, sample_of
from edgefarm.controller.planning.artifacts import (
    Artifact,
    ArtifactSequenceError,
    artifact_paths,
    check_sequence,
    end_index,
)
from edgefarm.controller.planning.backends import artifact_format
from edgefarm.controller.planning.input_plan import ShapeList
from edgefarm.controller.planning.job_inputs import JobInputs, require_protocol
from edgefarm.controller.planning.run_plan import AS_IS, MeasureSettings, ModelSource, RunPlan, Target
from edgefarm.controller.planning.scheduler import PlannedJob
from edgefarm.controller.results.store import JobRecord, ResultStore, VariantRecord

log = logging.getLogger(__name__)
KIND = "bisect"
# One retry of a transport failure on the same board, then the board counts as lost and the search
# goes on with another board of the pool. As `edgefarm run`: no quarantine (an engineer's artifact
# crashing says nothing about a shared board) and no waiting for a board someone else holds.
BISECT_BOARD = RetryPolicy(attempts=2, backoff_s=0.5, quarantine_after=1_000_000, wait_for_leases=False)
BOARD_FAULTS = (TRANSPORT, "infrastructure")


@dataclass(frozen=True)
class BisectConfig:
    """What a bisect was asked; stored with the run (under "bisect" in its plan)."""

    artifacts: tuple[str, ...]
    device: str | None = None          # a device or a pool of the devices file; None: the embedded local agent
    devices: str | None = None         # the devices file (default ./devices.yaml)
    good: str | None = None            # the ends: a label, file name, path or position (default first, last)
    bad: str | None = None
    threshold: float = 0.05
    max_rounds: int = 3
    shapes: ShapeList = ()
    inputs: str | None = None
    measure: MeasureSettings = field(default_factory=MeasureSettings)

    def check(self) -> None:
        if not 0 < self.threshold < 1:
            raise ArtifactSequenceError(f"--threshold {self.threshold:g} is out of range; give a slowdown between 0 "
                                        "and 100 %, e.g. --threshold 5%")
        if self.max_rounds < 1:
            raise ArtifactSequenceError(f"--max-rounds {self.max_rounds} must be >= 1")


@dataclass(frozen=True)
class BisectOutcome:
    run_id: str
    result: BisectResult
    artifacts: tuple[Artifact, ...]


def run_bisect(config: BisectConfig, store: ResultStore, ui: RunConsole, cache_dir: Path,
               leases_url: str | None) -> BisectOutcome:
    """Check the artifacts (refused before anything is measured), then search on the board(s)."""
    config.check()
    artifacts = _artifacts(config, cache_dir)
    good, bad = _ends(config, artifacts)
    with ExitStack() as stack:
        boards = stack.enter_context(boards_named(config.device, config.devices, cache_dir))
        leases = stack.enter_context(leases_for(leases_url if config.device else None))
        boards = _usable_first(boards, leases, artifacts[0].inputs, config.measure.profile)
        run_id = _new_run(store, config, artifacts, boards)
        with store.heartbeat(run_id), _finishing(store, run_id):
            measurer = BoardMeasurer(store, run_id, boards, artifacts, leases, config.measure, ui)
            result = Search([a.label for a in artifacts], measurer, BisectPolicy(config.threshold, config.max_rounds),
                            good, bad, on_step=lambda partial: _store_search(store, run_id, config, partial)).run()
            _store_search(store, run_id, config, result)
            store.set_verdict(run_id, result.status.value)
            store.finish_run(run_id, "partial" if result.status is BisectStatus.STOPPED else "done")
    return BisectOutcome(run_id, result, tuple(artifacts))


def _artifacts(config: BisectConfig, cache_dir: Path) -> list[Artifact]:
    def inputs_of(path: Path) -> JobInputs:  # exactly what `edgefarm run FILE --shape ...` would feed it
        plan = RunPlan(str(path), (AS_IS,), Target(KIND, None), cache_dir, config.measure, shapes=config.shapes,
                       inputs_npz=Path(config.inputs) if config.inputs else None)
        return job_inputs(plan, ModelSource(path, None, None, None))
    given = config.artifacts[0] if len(config.artifacts) == 1 else list(config.artifacts)  # a directory or a list
    return check_sequence(artifact_paths(given), inputs_of)


def _ends(config: BisectConfig, artifacts: Sequence[Artifact]) -> tuple[int, int]:
    names, paths = [a.label for a in artifacts], [a.path for a in artifacts]
    good = end_index(names, paths, config.good, "--good", 0)
    bad = end_index(names, paths, config.bad, "--bad", len(artifacts) - 1)
    if good >= bad:
        raise ArtifactSequenceError(f"--good {names[good]} does not come before --bad {names[bad]} in the "
                                    "sequence; the good end is the older artifact")
    return good, bad


def _usable_first(boards: list[Device], leases: LeaseManager, inputs: JobInputs, profile: bool) -> list[Device]:
    """The boards from the first that is free and answers: a board someone else holds, or one that
    is unreachable (or too old), is one clear error before anything is stored, unless another
    board of the pool will do."""
    for i, board in enumerate(boards):
        try:
            _check_usable(board, leases, inputs, profile)
            return boards[i:]
        except (AgentUnreachableError, LeaseError) as exc:
            if i == len(boards) - 1:
                raise
            log.warning("%s; trying %s", exc, boards[i + 1].name)
    return boards


def _check_usable(board: Device, leases: LeaseManager, inputs: JobInputs, profile: bool) -> None:
    (state,) = leases.states([board.name])
    if state.lease is not None:
        raise LeaseError(f"device {board.name!r} is leased by {state.lease.owner} ({state.lease.purpose}) for "
                         f"{state.expires_in_s:.0f} s more; try again later, or see 'edgefarm devices status'")
    require_protocol(board.name, probe(board), inputs, profile)


def _new_run(store: ResultStore, config: BisectConfig, artifacts: Sequence[Artifact], boards: list[Device]) -> str:
    where = config.device or boards[0].name
    run_id = store.new_run(f"bisect {len(artifacts)} artifacts on {where}", KIND, plan={"bisect": asdict(config)})
    for position, a in enumerate(artifacts):
        store.add_variant(run_id, VariantRecord(sequence_name(artifacts), a.label, {}, a.sha256, a.size_bytes, None,
                                                0.0, {"bisect_position": position, "path": str(a.path)}))
    return run_id


def sequence_name(artifacts: Sequence[Artifact]) -> str:
    """What the results call the model: the first artifact's stem without its trailing number (ckpt-03 → ckpt)."""
    stem = artifacts[0].path.stem
    return re.sub(r"[-_.]*\d+$", "", stem) or stem


def _store_search(store: ResultStore, run_id: str, config: BisectConfig, result: BisectResult) -> None:
    store.set_plan(run_id, {"bisect": asdict(config), "search": result.to_json()})


@contextmanager
def _finishing(store: ResultStore, run_id: str) -> Iterator[None]:
    """A bisect cut short keeps what it measured and its search so far; the run says how it ended."""
    try:
        yield
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted")
        raise
    except BaseException:
        store.finish_run(run_id, "failed")
        raise


class BoardMeasurer:
    """One job per call, on the current board, through FarmRunner; a board lost moves to the next."""

    def __init__(self, store: ResultStore, run_id: str, boards: Sequence[Device], artifacts: Sequence[Artifact],
                 leases: LeaseManager, measure: MeasureSettings, ui: RunConsole) -> None:
        self.store, self.run_id, self.leases, self.settings, self.ui = store, run_id, leases, measure, ui
        self.boards, self.artifacts = list(boards), list(artifacts)
        self.model = sequence_name(artifacts)
        self._current = 0

    @property
    def board(self) -> Device:
        return self.boards[self._current]

    def measure(self, index: int) -> Measurement:
        artifact, board = self.artifacts[index], self.board
        record = JobRecord(uuid.uuid4().hex, self.run_id, self.model, artifact.label, board.name, "", artifact.sha256)
        self.store.add_job(record)
        job = FarmJob(PlannedJob(self.model, artifact.label, board.name, (board.name,), artifact_format(artifact.path)),
                      record, artifact.path, None, "", inputs=artifact.inputs)
        outcome = self._run(board, job)
        if outcome.failed:
            end = outcome.failed[0]
            if end.kind in BOARD_FAULTS:
                raise BoardLost(board.name, f"{end.kind}: {end.message}")
            raise ArtifactFailed(f"{artifact.label} failed on {board.name} ({end.kind}): {end.message}")
        return self._measurement(index, board, record)

    def next_board(self, lost: BoardLost) -> str | None:
        if self._current + 1 >= len(self.boards):
            return None
        self._current += 1
        self.ui.note(f"[yellow]{lost}; the bisect goes on with {self.board.name}[/yellow]")
        return self.board.name

    def _run(self, board: Device, job: FarmJob) -> FarmOutcome:
        runner = FarmRunner(self.store, self.leases, {board.name: board}, self.settings, self.ui,
                            owner=f"{default_owner()}/{self.run_id}", policy=BISECT_BOARD, single_board=True)
        try:
            return asyncio.run(runner.run([job]))
        except LeaseError as exc:  # someone else holds the board, or the lease database failed
            self.store.add_failure(job.record, "infrastructure", str(exc))
            raise BoardLost(board.name, str(exc)) from exc

    def _measurement(self, index: int, board: Device, record: JobRecord) -> Measurement:
        stored = next(r for r in self.store.results(self.run_id) if r.job.id == record.id)
        sample = sample_of(BenchmarkKey(self.model, record.variant, board.name, stored.job.backend), stored.result)
        # Runs of two boards are never compared; the board in the fingerprint makes sure of it.
        return Measurement(index, board.name, record.id,
                           replace(sample, fingerprint={**sample.fingerprint, "board": board.name}))
