"""Executing a plan on many boards at once (grpc.aio): exactly one job per board, each board
held by a lease that expires if this controller dies, transport failures retried with
backoff on the same board or another of its pool, bad input and crashes not retried, and a
board failing N jobs in a row quarantined until a health check passes.

Planning itself is pure (controller/scheduler.py); storing is the results store's job."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from controller.canary import health_check
from controller.client import AgentFaultError, AgentRejectedError, AgentUnreachableError, AsyncAgentClient
from controller.console import RunConsole
from controller.inventory import BackendSettings, Device
from controller.job_inputs import JobInputs, require_protocol
from controller.leases import DeviceQuarantinedError, Heartbeat, Lease, LeaseError, LeaseManager
from controller.pipeline import BACKEND_BY_SUFFIX, MeasureSettings, RunPlan, Target, build_spec
from controller.scheduler import PlannedJob, assign
from controller.store import JobRecord, ResultStore
from protos import agent_pb2 as pb

LEASE_DB_ATTEMPTS = 3            # consecutive lease-database errors before the run gives up
TRANSPORT = "transport"          # the link or the agent went away: worth retrying
NOT_RETRIED = ("bad-input", "backend-crash")
SIMULATED = "simulated"          # agent/backends/simulated.py: sleeps, measures nothing


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3                # per job, over all boards
    backoff_s: float = 0.5           # doubles each retry
    quarantine_after: int = 3        # consecutive failures on one board
    lease_ttl_s: float = 60.0
    poll_s: float = 0.2              # how often to look for a board leased by someone else


@dataclass(frozen=True)
class FarmJob:
    planned: PlannedJob
    record: JobRecord                # the stored job row (device = target label until it runs)
    artifact: Path
    eval_npz: Path | None
    eval_sha: str
    attempts: int = 0
    not_before: float = 0.0          # monotonic time before which a retry must wait (backoff)
    failed_on: tuple[str, ...] = ()  # boards it failed on: a retry goes to another board of its pool
    inputs: JobInputs = JobInputs()  # shapes, input data and fidelity set of its model


@dataclass(frozen=True)
class JobEnd:
    job: FarmJob
    device: str
    kind: str                        # "done", "transport", "bad-input", "backend-crash", "timeout", ...
    message: str = ""
    result: pb.Result | None = None


@dataclass
class FarmOutcome:
    done: int = 0
    failed: list[JobEnd] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


class FarmRunner:
    def __init__(self, store: ResultStore, leases: LeaseManager, devices: Mapping[str, Device],
                 measure: MeasureSettings, ui: RunConsole, owner: str, policy: RetryPolicy = RetryPolicy()) -> None:
        self.store, self.leases, self.devices = store, leases, devices
        self.measure, self.ui, self.owner, self.policy = measure, ui, owner, policy
        self._streak: dict[str, int] = {}
        self._quarantined: set[str] = set()
        self._lease_failures = 0  # consecutive lease-database errors

    async def run(self, jobs: list[FarmJob]) -> FarmOutcome:
        outcome, pending, running = FarmOutcome(), list(jobs), {}
        try:
            while pending or running:
                self._start_assignments(pending, running)
                if not running:
                    if not self._anyone_can_run(pending, outcome):
                        break
                    await asyncio.sleep(self.policy.poll_s)
                    continue
                done, _ = await asyncio.wait(running, timeout=self.policy.poll_s * 5,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    self._settle(task.result(), pending, outcome)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return outcome

    def _start_assignments(self, pending: list[FarmJob], running: dict) -> None:
        busy = {device for _, device in running.values()}
        idle = [d for d in self.devices if d not in busy and d not in self._quarantined]
        ready = [j for j in pending if j.not_before <= time.monotonic()]
        # In rounds: a job whose board is leased elsewhere is offered the next idle board of its pool
        # (else it would wait on that board while others idle). Each round takes boards out of `idle`.
        while ready and idle:
            offers = {id(view): (view, job) for job in ready for view in (self._placement(job),)}
            pairs = assign([view for view, _ in offers.values()], idle)
            if not pairs:
                return
            for planned, device in pairs:
                idle.remove(device)
                lease = self._try_lease(device)
                if lease is None:
                    continue  # held by another controller (or quarantined there)
                job = offers[id(planned)][1]
                ready.remove(job)
                pending.remove(job)
                running[asyncio.ensure_future(self._run_on(job, device, lease))] = (job, device)

    def _placement(self, job: FarmJob) -> PlannedJob:
        """The job as offered to the scheduler: a retry avoids the boards it failed on (one may be
        down) while its pool has another that is not quarantined."""
        others = tuple(d for d in job.planned.candidates if d not in job.failed_on and d not in self._quarantined)
        return replace(job.planned, candidates=others) if others and job.failed_on else job.planned

    def _try_lease(self, device: str) -> Lease | None:
        try:
            lease = self.leases.acquire(device, self.owner, "edgefarm farm run", self.policy.lease_ttl_s)
        except DeviceQuarantinedError as exc:  # another controller's verdict on the board
            self.ui.note(f"[yellow]{device}: {exc}[/yellow]")
            self._quarantined.add(device)
            return None
        except Exception as exc:  # the lease database failed, not the board: never quarantine for it
            return self._lease_database_failed(device, exc)
        self._lease_failures = 0
        return lease

    def _lease_database_failed(self, device: str, exc: Exception) -> None:
        """A blip is retried at the next poll; a database that keeps failing ends the run, saying so."""
        self._lease_failures += 1
        if self._lease_failures >= LEASE_DB_ATTEMPTS:
            raise LeaseError(f"the lease database failed {self._lease_failures} times in a row ({type(exc).__name__}: "
                             f"{exc}); no board was quarantined for it: check --leases and run again") from exc
        self.ui.note(f"[yellow]{device}: the lease database failed ({exc}); trying again[/yellow]")
        return None

    def _anyone_can_run(self, pending: list[FarmJob], outcome: FarmOutcome) -> bool:
        """Jobs whose every candidate is quarantined can never run in this pass: record them."""
        stuck = [j for j in pending if set(j.planned.candidates) <= self._quarantined]
        for job in stuck:
            pending.remove(job)
            self._fail(JobEnd(job, job.planned.target, "infrastructure",
                              "every board that can run it is quarantined"), outcome)
        return bool(pending)

    async def _run_on(self, job: FarmJob, device: str, lease: Lease) -> JobEnd:
        heartbeat = Heartbeat(self.leases, lease).start()
        client = AsyncAgentClient(device, self.devices[device].address)
        try:
            return await self._benchmark(client, job, device)
        except AgentUnreachableError as exc:
            return JobEnd(job, device, TRANSPORT, str(exc))
        except AgentFaultError as exc:  # the board's disk is full, or the upload arrived damaged
            return JobEnd(job, device, "infrastructure", str(exc))
        except AgentRejectedError as exc:
            return JobEnd(job, device, "bad-input", str(exc))
        finally:
            heartbeat.release()
            await client.close()

    async def _benchmark(self, client: AsyncAgentClient, job: FarmJob, device: str) -> JobEnd:
        backend = backend_for(self.devices[device], job.artifact)
        record = replace(job.record, device=device, backend=backend)
        self.store.set_job_device(record.id, device, backend)
        require_protocol(device, await client.connect(), job.inputs)
        await client.ensure_uploaded(job.artifact, record.artifact_sha256)
        if job.eval_npz is not None:
            await client.ensure_uploaded(job.eval_npz, job.eval_sha)
        for path, sha in job.inputs.files():
            await client.ensure_uploaded(path, sha)
        plan = RunPlan(job.planned.model, (job.planned.recipe,), _target(self.devices[device]), Path("."), self.measure)
        async for event in client.benchmark(build_spec(record, plan, job.eval_sha, job.inputs)):
            kind = event.WhichOneof("event")
            if kind == "result":
                return JobEnd(replace(job, record=record), device, "done", result=event.result)
            if kind == "failure":
                name = pb.Failure.Kind.Name(event.failure.kind).lower().replace("_", "-")
                return JobEnd(replace(job, record=record), device, name, event.failure.message)
        return JobEnd(job, device, TRANSPORT, "the agent closed the stream without a result")

    def _settle(self, end: JobEnd, pending: list[FarmJob], outcome: FarmOutcome) -> None:
        if end.kind == "done":
            self.store.add_result(end.job.record, end.result)
            self._streak[end.device] = 0
            outcome.done += 1
            return
        self._count_failure(end.device, end, outcome)
        retry = end.kind not in NOT_RETRIED and end.job.attempts + 1 < self.policy.attempts
        if retry:
            delay = self.policy.backoff_s * 2 ** end.job.attempts
            pending.append(replace(end.job, attempts=end.job.attempts + 1, not_before=time.monotonic() + delay,
                                   failed_on=(*end.job.failed_on, end.device)))
            self.ui.note(f"[yellow]{end.job.planned.key} on {end.device}: {end.kind}: {end.message}; "
                         f"retrying in {delay:.1f} s[/yellow]")
        else:
            self._fail(end, outcome)

    def _count_failure(self, device: str, end: JobEnd, outcome: FarmOutcome) -> None:
        if end.kind == "bad-input":
            return  # the artifact's fault, not the board's
        self._streak[device] = self._streak.get(device, 0) + 1
        if self._streak[device] >= self.policy.quarantine_after and device not in self._quarantined:
            reason = f"{self._streak[device]} failures in a row, last: {end.kind}: {end.message[:200]}"
            self.leases.quarantine(device, reason)
            self._quarantined.add(device)
            outcome.quarantined.append(device)
            self.ui.note(f"[red]{device} quarantined: {reason}[/red]")
            asyncio.ensure_future(self._recheck(device))

    async def _recheck(self, device: str) -> None:
        """Describe plus the canary model; a board that passes returns to service."""
        ok, why = await health_check(device, self.devices[device].address)
        if ok:
            self.leases.unquarantine(device)
            self._quarantined.discard(device)
            self._streak[device] = 0
            self.ui.note(f"[green]{device} passed its health check and is back in service[/green]")
        else:
            self.ui.note(f"[red]{device} failed its health check: {why}[/red]")

    def _fail(self, end: JobEnd, outcome: FarmOutcome) -> None:
        self.store.add_failure(end.job.record, end.kind, end.message)
        outcome.failed.append(end)
        self.ui.note(f"[red]{end.job.planned.key} failed on {end.device} ({end.kind}): {end.message}[/red]")


def backend_for(device: Device, artifact: Path) -> str:
    """.tflite → litert; .onnx → onnxruntime where the board has it, else tensorrt; a .json on a
    device built in code with the simulated backend (scale tests; devices.yaml cannot name it) → simulated."""
    if artifact.suffix == ".json" and SIMULATED in device.backends:
        return SIMULATED
    wanted = BACKEND_BY_SUFFIX.get(artifact.suffix, "onnxruntime")
    if wanted == "onnxruntime" and wanted not in device.backends and "tensorrt" in device.backends:
        return "tensorrt"
    return wanted


def _target(device: Device) -> Target:
    return Target(device.name, device.address, device.backends,
                  {name: device.backend_options.get(name, BackendSettings(name)) for name in device.backends})
