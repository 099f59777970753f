"""An engineer's run on one board (`edgefarm run`): model → variants → the farm's executor → store.

Each phase is timed (train / compress / measure) so `make bench` can show where a run's wall time goes.
"""
from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.models import ModelBundle
from edgefarm.compressors.recipes import Variant, compress
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import DeviceInfo
from edgefarm.controller.config.inventory import Device, UnknownDeviceError, load_inventory
from edgefarm.controller.config.targets import DEFAULT_DEVICES_FILE
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm import FarmJob, FarmOutcome, FarmRunner, RetryPolicy
from edgefarm.controller.execution.prepare import (
    host_fidelity_stats,
    job_inputs,
    model_source,
    prebuilt_variant,
    variant_record,
)
from edgefarm.controller.leases import LeaseManager, default_owner, open_lease_manager, sqlite_url
from edgefarm.controller.planning.backends import artifact_format
from edgefarm.controller.planning.job_inputs import JobInputs, require_protocol
from edgefarm.controller.planning.run_plan import (
    JobFailure,
    ModelSource,
    PhaseTimes,
    RunOutcome,
    RunPlan,
    Target,
)
from edgefarm.controller.planning.scheduler import PlannedJob
from edgefarm.controller.results.store import JobRecord, ResultStore

# One attempt per job, no waiting on a board someone else holds, and never a quarantine: an engineer's
# own model crashing three times says nothing about the board the farm shares.
SINGLE_BOARD = RetryPolicy(attempts=1, quarantine_after=1_000_000, wait_for_leases=False)


@contextmanager
def board_for(target: Target, cache_dir: Path) -> Iterator[Callable[[], Device]]:
    """Yields a function that returns the run's one board as a Device. The embedded local agent
    starts booting at once, so its start-up overlaps whatever the caller does before asking."""
    local = LocalAgent(cache_dir / "local-agent").start() if target.address is None else None

    def board() -> Device:
        host, _, port = (local.wait_ready() if local is not None else target.address).rpartition(":")
        return Device(target.name, host, int(port), {}, target.backends, dict(target.settings), target.security)
    try:
        yield board
    finally:
        if local is not None:
            local.stop()



@contextmanager
def boards_named(device: str | None, devices_file: Path | None, cache_dir: Path) -> Iterator[list[Device]]:
    """The board `device` names, or every board of the pool it names (in the devices file's order, to
    go on with if one is lost); None: the embedded local agent, started for the block."""
    if device is None:
        with board_for(Target("local", None), cache_dir) as connect:
            yield [connect()]
        return
    inventory = load_inventory(Path(devices_file or DEFAULT_DEVICES_FILE))
    if device in inventory.names():
        yield [inventory.get(device)]
    elif device in inventory.pools and inventory.pool(device):
        yield inventory.pool(device)
    else:
        raise UnknownDeviceError(f"{inventory.source}: unknown device or pool {device!r}; valid devices: "
                                 f"{', '.join(inventory.names()) or '(none)'}; pools: "
                                 f"{', '.join(sorted(inventory.pools)) or '(none defined)'}")


def probe(board: Device) -> DeviceInfo:
    """Describe, before any job is queued: AgentUnreachableError names the address and the fix."""
    client = AgentClient.for_device(board)
    try:
        return client.connect()
    finally:
        client.close()


class RunExecutor:
    """An engineer's run on one board: the variants are made here, then measured by the farm's own
    executor (FarmRunner) as a one-board farm run with one attempt per job, under the same lease,
    backend and event rules. A board leased by someone else is refused at once rather than waited for."""

    def __init__(self, store: ResultStore, ui: RunConsole, times: PhaseTimes | None = None,
                 leases_url: str | None = None) -> None:
        """leases_url: the farm's lease database for a devices.yaml board (None: the embedded agent's own)."""
        self.store, self.ui, self.leases_url = store, ui, leases_url
        self.times = times or PhaseTimes()

    def execute(self, plan: RunPlan, run_id: str) -> RunOutcome:
        with self.store.heartbeat(run_id), board_for(plan.target, plan.cache_dir) as connect:
            with self.times.phase("train"):
                source = model_source(plan, self.ui)
            inputs = job_inputs(plan, source)  # refuses unresolved shapes before anything is compressed
            with self.times.phase("compress"):
                variants = self._variants(plan, source, inputs, run_id)
            board = connect()
            # an unreachable board is one clear error; an agent too old for the job is refused
            require_protocol(board.name, probe(board), inputs, plan.measure.profile)
            jobs = [self._job(plan, board, v, source.eval_npz, inputs.for_artifact(v.path), run_id) for v in variants]
            with self.times.phase("measure"):
                outcome = self._run(plan, board, jobs, run_id)
        failures = tuple(JobFailure(end.job.planned.recipe, end.device, end.kind, end.message)
                         for end in outcome.failed)
        return RunOutcome(run_id, outcome.done, failures, outcome.bytes_uploaded)

    def _variants(self, plan: RunPlan, source: ModelSource, inputs: JobInputs, run_id: str) -> list[Variant]:
        if source.bundle is None:
            variant = prebuilt_variant(plan, source)
            self.store.add_variant(run_id, variant_record(variant, {}))
            return [variant]
        return [self._compress(source.bundle, recipe, plan, inputs, run_id) for recipe in plan.recipes]

    def _compress(self, bundle: ModelBundle, recipe: str, plan: RunPlan, inputs: JobInputs, run_id: str) -> Variant:
        variant = compress(bundle, recipe, plan.cache_dir, progress=self.ui.phase_bar(f"compress {recipe}"))
        self.store.add_variant(run_id, variant_record(variant, host_fidelity_stats(variant, inputs)))
        return variant

    def _job(self, plan: RunPlan, board: Device, variant: Variant, eval_npz: Path | None, inputs: JobInputs,
             run_id: str) -> FarmJob:
        planned = PlannedJob(plan.model, variant.recipe, board.name, (board.name,),
                             artifact_format(variant.path), plan.backend)
        record = JobRecord(uuid.uuid4().hex, run_id, variant.model, variant.recipe, board.name, "", variant.sha256)
        self.store.add_job(record)
        return FarmJob(planned, record, variant.path, eval_npz, sha256_file(eval_npz) if eval_npz else "",
                       inputs=inputs)

    def _run(self, plan: RunPlan, board: Device, jobs: list[FarmJob], run_id: str) -> FarmOutcome:
        with self._leases(plan) as leases:
            runner = FarmRunner(self.store, leases, {board.name: board}, plan.measure, self.ui,
                                owner=f"{default_owner()}/{run_id}", policy=SINGLE_BOARD, single_board=True)
            return asyncio.run(runner.run(jobs))

    def _leases(self, plan: RunPlan) -> AbstractContextManager[LeaseManager]:
        return leases_for(self.leases_url if plan.target.address is not None else None)


@contextmanager
def leases_for(shared_url: str | None) -> Iterator[LeaseManager]:
    """The farm's lease database (a devices.yaml board); None: a private one for the embedded agent,
    which is the run's own board."""
    if shared_url:
        with open_lease_manager(shared_url) as leases:
            yield leases
        return
    with tempfile.TemporaryDirectory() as private:
        with open_lease_manager(sqlite_url(Path(private) / "leases.sqlite")) as leases:
            yield leases
