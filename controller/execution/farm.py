"""Executing planned jobs on boards (grpc.aio): the one executor, for a farm night and for an
engineer's `edgefarm run` alike. Exactly one job per board, each board held by a lease that expires
if this controller dies, transport failures retried with backoff on the same board or another of
its pool, bad input and crashes not retried, and a board failing N jobs in a row quarantined until
a health check passes.

Planning itself is pure (controller/planning/); storing is the results store's job."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgefarm.controller.agents.canary import health_check
from edgefarm.controller.agents.client import (
    AgentFaultError,
    AgentRejectedError,
    AgentUnreachableError,
    AsyncAgentClient,
)
from edgefarm.controller.agents.records import BenchmarkResult, Failure, Progress
from edgefarm.controller.agents.security import SecurityError
from edgefarm.controller.config.inventory import BackendSettings, Device
from edgefarm.controller.console import RunConsole
from edgefarm.controller.leases import DeviceQuarantinedError, Heartbeat, Lease, LeaseError, LeaseManager
from edgefarm.controller.planning.backends import NoBackendError, choose_backend, runtime_refusal
from edgefarm.controller.planning.job_inputs import JobInputs, require_protocol
from edgefarm.controller.planning.run_plan import MeasureSettings, build_spec
from edgefarm.controller.planning.scheduler import PlannedJob, assign
from edgefarm.controller.results.store import JobRecord, ResultStore

log = logging.getLogger(__name__)
LEASE_DB_ATTEMPTS = 3            # consecutive lease-database errors before the run gives up
TRANSPORT = "transport"          # the link or the agent went away: worth retrying
NOT_RETRIED = ("bad-input", "backend-crash")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3                # per job, over all boards
    backoff_s: float = 0.5           # doubles each retry
    quarantine_after: int = 3        # consecutive failures on one board
    lease_ttl_s: float = 60.0
    poll_s: float = 0.2              # how often to look for a board leased by someone else
    wait_for_leases: bool = True     # False: a board leased by someone else is refused at once (`edgefarm run`)
    lease_wait_s: float | None = None  # a job waiting this long on boards others hold fails (None: no limit)
    recheck_s: float = 30.0          # a quarantined board that failed its check is checked again after this,
    recheck_max_s: float = 600.0     # doubling up to this, for as long as the run lasts


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
    result: BenchmarkResult | None = None


@dataclass(frozen=True)
class RunnerSeams:
    """What the runner takes from outside: time, a board's client, and the health check."""

    clock: Callable[[], float] = time.monotonic
    client: Callable[[Device], AsyncAgentClient] = AsyncAgentClient.for_device
    health_check: Callable[[Device], Awaitable[tuple[bool, str]]] = health_check


@dataclass
class FarmOutcome:
    done: int = 0
    failed: list[JobEnd] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


class FarmRunner:
    def __init__(self, store: ResultStore, leases: LeaseManager, devices: Mapping[str, Device],
                 measure: MeasureSettings, ui: RunConsole, owner: str, policy: RetryPolicy = RetryPolicy(),
                 single_board: bool = False, seams: RunnerSeams | None = None, reclaim: str = "") -> None:
        """single_board: an engineer's console: a progress bar per job, and failures left to the caller's
        one-line report instead of notes as they happen. seams: the clock, client and health check
        (real ones by default; tests pass fakes to check the retry, backoff and quarantine rules)."""
        self.store, self.leases, self.devices = store, leases, devices
        self.measure, self.ui, self.owner, self.policy = measure, ui, owner, policy
        self.single_board = single_board
        self.seams = seams or RunnerSeams()
        self.reclaim = reclaim   # an owner suffix whose leases are ours to take over (a resume's own dead run)
        self._streak: dict[str, int] = {}
        self._quarantined: set[str] = set()   # out of this run's rotation until a health check passes
        self._unhealthy: set[str] = set()     # quarantined boards whose latest health check failed
        self._lease_failures = 0  # consecutive lease-database errors
        self._health_checks: set[asyncio.Task] = set()  # kept, so none is lost or outlives the run
        self._bytes_uploaded = 0
        self._held_elsewhere: set[str] = set()     # boards another owner holds; said once each
        self._waiting_since: dict[str, float] = {}  # job id → when it first found no board free

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
            for task in (*running, *self._health_checks):
                task.cancel()
            await asyncio.gather(*running, *self._health_checks, return_exceptions=True)
        outcome.bytes_uploaded = self._bytes_uploaded
        return outcome

    def _start_assignments(self, pending: list[FarmJob], running: dict) -> None:
        busy = {device for _, device in running.values()}
        idle = [d for d in self.devices if d not in busy and d not in self._quarantined]
        ready = [j for j in pending if j.not_before <= self.seams.clock()]
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
            lease = self.leases.acquire(device, self.owner, "edgefarm farm run", self.policy.lease_ttl_s,
                                        self.reclaim)
        except DeviceQuarantinedError as exc:  # an earlier verdict on the board: check it before giving up on it
            self.ui.note(f"[yellow]{device} is quarantined ({exc}); checking its health[/yellow]")
            self._start_healing(device)
            return None
        except Exception as exc:  # the lease database failed, not the board: never quarantine for it
            return self._lease_database_failed(device, exc)
        self._lease_failures = 0
        if lease is not None:
            self._held_elsewhere.discard(device)
            return lease
        who = self._holder(device)
        if not self.policy.wait_for_leases:
            raise LeaseError(f"device {device!r} is leased by {who}; try again later, or see 'edgefarm devices status'")
        if device not in self._held_elsewhere:
            self._held_elsewhere.add(device)
            log.info("%s is leased by %s; waiting for it", device, who)
            self.ui.note(f"[yellow]{device} is leased by {who}; waiting for it[/yellow]")
        return None

    def _holder(self, device: str) -> str:
        (state,) = self.leases.states([device])
        holder = state.lease
        return f"{holder.owner} ({holder.purpose}) for {state.expires_in_s:.0f} s more" if holder else "someone"

    def _lease_database_failed(self, device: str, exc: Exception) -> None:
        """A blip is retried at the next poll; a database that keeps failing ends the run, saying so."""
        self._lease_failures += 1
        if self._lease_failures >= LEASE_DB_ATTEMPTS:
            raise LeaseError(f"the lease database failed {self._lease_failures} times in a row ({type(exc).__name__}: "
                             f"{exc}); no board was quarantined for it: check --leases and run again") from exc
        self.ui.note(f"[yellow]{device}: the lease database failed ({exc}); trying again[/yellow]")
        return None

    def _anyone_can_run(self, pending: list[FarmJob], outcome: FarmOutcome) -> bool:
        """Jobs whose every candidate is quarantined and failed its health check cannot run now:
        record them. Jobs whose boards are still being checked wait for the verdict."""
        stuck = [j for j in pending if set(j.planned.candidates) <= self._unhealthy]
        for job in stuck:
            pending.remove(job)
            self._fail(JobEnd(job, job.planned.target, "infrastructure",
                              "every board that can run it is quarantined and failed its health check"), outcome)
        for job in self._waited_too_long(pending):
            pending.remove(job)
            boards = ", ".join(sorted(set(job.planned.candidates) & self._held_elsewhere))
            self._fail(JobEnd(job, job.planned.target, "infrastructure",
                              f"waited {self.policy.lease_wait_s:g} s for {boards}, leased by others "
                              "(--lease-wait)"), outcome)
        return bool(pending)

    def _waited_too_long(self, pending: list[FarmJob]) -> list[FarmJob]:
        """Jobs whose every usable board has been held by someone else for lease_wait_s."""
        if self.policy.lease_wait_s is None:
            return []
        now, usable = self.seams.clock(), set(self.devices) - self._unhealthy
        blocked = [j for j in pending if set(j.planned.candidates) & usable <= self._held_elsewhere]
        for job in blocked:
            self._waiting_since.setdefault(job.record.id, now)
        return [j for j in blocked if now - self._waiting_since[j.record.id] >= self.policy.lease_wait_s]

    async def _run_on(self, job: FarmJob, device: str, lease: Lease) -> JobEnd:
        heartbeat = Heartbeat(self.leases, lease).start()
        try:
            client = self.seams.client(self.devices[device])
        except SecurityError as exc:  # this controller cannot dial the board as declared: no use retrying
            heartbeat.release()
            return JobEnd(job, device, "infrastructure", str(exc))
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
        board = self.devices[device]
        try:
            backend = choose_backend(board.backends, job.planned.artifact_format, job.planned.backend or None)
        except NoBackendError as exc:  # planning filters pools by backend, so only a pinned board gets here
            return JobEnd(job, device, "bad-input", f"{device}: {exc}")
        record = replace(job.record, device=device, backend=backend)
        self.store.set_job_device(record.id, device, backend)
        info = await client.connect()
        require_protocol(device, info, job.inputs, self.measure.profile)
        refusal = runtime_refusal(device, info, backend)
        if refusal:  # devices.yaml lists the backend, the board's Describe says it cannot run it
            return JobEnd(replace(job, record=record), device, "bad-input", refusal)
        files = [(job.artifact, record.artifact_sha256), *job.inputs.files()]
        if job.eval_npz is not None:
            files.append((job.eval_npz, job.eval_sha))
        for path, sha in files:
            self._bytes_uploaded += await client.ensure_uploaded(path, sha)
        settings = board.backend_options.get(backend, BackendSettings(backend))
        progress = self.ui.phase_bar(f"measure {record.variant} on {device}") if self.single_board else None
        async for event in client.benchmark(build_spec(record, self.measure, settings, job.eval_sha, job.inputs)):
            if isinstance(event, Progress):
                if progress:
                    progress(event.phase, event.fraction)
            elif isinstance(event, BenchmarkResult):
                return JobEnd(replace(job, record=record), device, "done", result=event)
            elif isinstance(event, Failure):
                return JobEnd(replace(job, record=record), device, event.kind, event.message)
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
            pending.append(replace(end.job, attempts=end.job.attempts + 1, not_before=self.seams.clock() + delay,
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
            outcome.quarantined.append(device)
            self.ui.note(f"[red]{device} quarantined: {reason}[/red]")
            self._start_healing(device)

    def _start_healing(self, device: str) -> None:
        """Out of rotation, and health-checked until it passes or the run ends (the task is kept)."""
        if device in self._quarantined:
            return
        self._quarantined.add(device)
        check = asyncio.ensure_future(self._heal(device))
        self._health_checks.add(check)
        check.add_done_callback(self._health_check_ended)

    async def _heal(self, device: str) -> None:
        delay = self.policy.recheck_s
        while not await self._recheck(device, next_in_s=delay):
            self._unhealthy.add(device)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.policy.recheck_max_s)

    def _health_check_ended(self, check: asyncio.Task) -> None:
        self._health_checks.discard(check)
        if not check.cancelled() and check.exception() is not None:
            error = check.exception()
            log.error("health check failed with %s: %s", type(error).__name__, error)
            self.ui.note(f"[red]a health check failed: {type(error).__name__}: {error}[/red]")

    async def _recheck(self, device: str, next_in_s: float) -> bool:
        """Describe plus the canary model; a board that passes returns to service. Every check is
        stored, with when the next is due, for `edgefarm devices status`."""
        ok, why = await self.seams.health_check(self.devices[device])
        log.info("health check of %s: %s", device, "passed" if ok else f"failed: {why}")
        try:
            self.leases.record_check(device, ok, why, f"{self.owner} (quarantine)", None if ok else next_in_s)
        except LeaseError as exc:  # the check itself counts; only its record is lost
            log.warning("could not store the health check of %s: %s", device, exc)
        if ok:
            self.leases.unquarantine(device)
            self._quarantined.discard(device)
            self._unhealthy.discard(device)
            self._streak[device] = 0
            self.ui.note(f"[green]{device} passed its health check and is back in service[/green]")
        else:
            self.ui.note(f"[red]{device} failed its health check: {why}[/red]")
        return ok

    def _fail(self, end: JobEnd, outcome: FarmOutcome) -> None:
        self.store.add_failure(end.job.record, end.kind, end.message)
        outcome.failed.append(end)
        log.info("%s failed on %s (%s): %s", end.job.planned.key, end.device, end.kind, end.message)
        if not self.single_board:
            self.ui.note(f"[red]{end.job.planned.key} failed on {end.device} ({end.kind}): {end.message}[/red]")
