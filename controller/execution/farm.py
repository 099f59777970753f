"""Executing planned jobs on boards (grpc.aio): the one executor, for a farm night and for an
engineer's `edgefarm run` alike. Exactly one job per board, each board held by a lease that expires
if this controller dies, transport failures retried with backoff on the same board or another of
its pool, bad input and crashes not retried, and a board failing N jobs in a row quarantined until
a health check passes.

At scale (benchmark P6): one channel per board for the whole run (board_session.py), the boards of
a wave leased in one statement and every lease-database call off the event loop (run_leases.py),
and results committed on a thread of their own while the board already runs its next job.

Planning itself is pure (controller/planning/); storing is the results store's job."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace

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
from edgefarm.controller.execution.board_session import BoardSession
from edgefarm.controller.execution.farm_records import (
    DEFAULT_POLICY,
    NOT_RETRIED,
    TRANSPORT,
    FarmJob,
    FarmOutcome,
    JobEnd,
    RetryPolicy,
    RunnerSeams,
)
from edgefarm.controller.execution.run_leases import RunLeases
from edgefarm.controller.execution.serial_thread import SerialThread
from edgefarm.controller.leases import LeaseError, LeaseManager
from edgefarm.controller.planning.backends import NoBackendError, choose_backend, runtime_refusal
from edgefarm.controller.planning.job_inputs import require_protocol
from edgefarm.controller.planning.run_plan import MeasureSettings, build_spec
from edgefarm.controller.planning.scheduler import PlannedJob, assign
from edgefarm.controller.results.store import ResultStore

__all__ = ["LEASE_DB_ATTEMPTS", "FarmJob", "FarmOutcome", "FarmRunner", "JobEnd", "RetryPolicy", "RunnerSeams"]

log = logging.getLogger(__name__)
LEASE_DB_ATTEMPTS = 3            # consecutive lease-database errors before the run gives up


class FarmRunner:
    def __init__(self, store: ResultStore, leases: LeaseManager, devices: Mapping[str, Device],
                 measure: MeasureSettings, ui: RunConsole, owner: str, policy: RetryPolicy = DEFAULT_POLICY,
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
        self._verdicts: set[asyncio.Future] = set()      # health checks' outcomes being stored
        self._bytes_uploaded = 0
        self._held_elsewhere: set[str] = set()     # boards another owner holds; said once each
        self._waiting_since: dict[str, float] = {}  # job id → when it first found no board free
        self._writes: set[asyncio.Future] = set()  # results-store writes not committed yet
        self._write_error: BaseException | None = None
        self._ended: list[asyncio.Task] = []        # jobs ended and not yet settled

    async def run(self, jobs: list[FarmJob]) -> FarmOutcome:
        outcome, pending, running = FarmOutcome(), list(jobs), {}
        self._open_run()
        try:
            while pending or running:
                self._raise_failed_write()
                await self._start_assignments(pending, running)
                if not running:
                    if not self._anyone_can_run(pending, outcome):
                        break
                    await asyncio.sleep(self.policy.poll_s)
                    continue
                for task in await self._ended_jobs():
                    running.pop(task)
                    await self._settle(task.result(), pending, outcome)
        finally:
            await self._close_run(running)
        outcome.bytes_uploaded = self._bytes_uploaded
        return outcome

    def _open_run(self) -> None:
        self._ended_signal = asyncio.Event()   # made on the run's own event loop
        self._run_leases = RunLeases(self.leases, self.owner, self.policy.lease_ttl_s, self.reclaim)
        self._results = SerialThread("results")
        # seams.client read at each dial: a test may swap the seams after construction
        self._sessions = {name: BoardSession(board, self._dial) for name, board in self.devices.items()}

    def _dial(self, board: Device) -> AsyncAgentClient:
        return self.seams.client(board)

    async def _close_run(self, running: dict) -> None:
        """Jobs and health checks cancelled, channels closed, leases given back, and every queued
        store write committed (or its error raised) before run() returns."""
        for task in (*running, *self._health_checks):
            task.cancel()
        await asyncio.gather(*running, *self._health_checks, return_exceptions=True)
        for verdict in await asyncio.gather(*self._verdicts, return_exceptions=True):
            if isinstance(verdict, Exception):
                log.error("a health check's verdict was not stored: %s: %s", type(verdict).__name__, verdict)
        await asyncio.gather(*(session.close() for session in self._sessions.values()), return_exceptions=True)
        await self._run_leases.close()
        try:
            await asyncio.gather(*self._writes)
            self._raise_failed_write()
        finally:
            self._results.close()

    def _write(self, fn: Callable[..., None], *args: object) -> None:
        """Queue a results-store write; it commits on the store's thread while the loop goes on."""
        write = self._results.submit(fn, *args)
        self._writes.add(write)
        write.add_done_callback(self._written)

    def _written(self, write: asyncio.Future) -> None:
        self._writes.discard(write)
        if not write.cancelled() and write.exception() is not None and self._write_error is None:
            self._write_error = write.exception()

    def _raise_failed_write(self) -> None:
        """A store that cannot write ends the run, as a synchronous write would have."""
        if self._write_error is not None:
            raise self._write_error

    async def _start_assignments(self, pending: list[FarmJob], running: dict) -> None:
        busy = {device for _, device in running.values()}
        idle = [d for d in self.devices if d not in busy and d not in self._quarantined]
        ready = [j for j in pending if j.not_before <= self.seams.clock()]
        # In rounds: a job whose board is leased elsewhere is offered the next idle board of its pool
        # (else it would wait on that board while others idle). Each round takes boards out of `idle`
        # and leases all of its boards in one statement.
        while ready and idle:
            offers = {id(view): (view, job) for job in ready for view in (self._placement(job),)}
            pairs = assign([view for view, _ in offers.values()], idle)
            if not pairs:
                break
            leased = await self._lease([device for _, device in pairs])
            for planned, device in pairs:
                idle.remove(device)
                if device in leased:
                    job = offers[id(planned)][1]
                    ready.remove(job)
                    pending.remove(job)
                    task = asyncio.ensure_future(self._run_on(job, device))
                    task.add_done_callback(self._job_ended)
                    running[task] = (job, device)
        await self._give_back_idle(running)

    def _job_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled():
            self._ended.append(task)
            self._ended_signal.set()

    async def _ended_jobs(self) -> list[asyncio.Task]:
        """The jobs that ended since last asked, waiting a while for one. A queue fed by each job's
        done callback, where asyncio.wait would hook and unhook every running job on each call (a
        thousand boards: a thousand callbacks per turn of the loop)."""
        if not self._ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended_signal.wait(), self.policy.poll_s * 5)
        self._ended_signal.clear()
        ended, self._ended = self._ended, []
        return ended

    async def _give_back_idle(self, running: dict) -> None:
        """A board this run holds with no job to give it goes back to the farm (another controller,
        or an engineer, may want it); a board going from job to job keeps its lease."""
        busy = {device for _, device in running.values()}
        idle = [device for device in self._run_leases.held() if device not in busy]
        if idle:
            try:
                await self._run_leases.give_back(idle)
            except LeaseError as exc:   # they run out within their ttl; the keeper no longer renews them
                log.warning("could not give back %s: %s", ", ".join(idle), exc)

    def _placement(self, job: FarmJob) -> PlannedJob:
        """The job as offered to the scheduler: a retry avoids the boards it failed on (one may be
        down) while its pool has another that is not quarantined."""
        if not job.failed_on:   # most jobs: no scan of a thousand-board pool on every loop turn
            return job.planned
        others = tuple(d for d in job.planned.candidates if d not in job.failed_on and d not in self._quarantined)
        return replace(job.planned, candidates=others) if others else job.planned

    async def _lease(self, devices: Sequence[str]) -> frozenset[str]:
        """The boards of `devices` this run now holds; the others are quarantined (health-checked
        now), held by someone else (waited for, said once), or the lease database failed."""
        try:
            claim = await self._run_leases.claim(devices)
        except Exception as exc:  # the lease database failed, not the board: never quarantine for it
            self._lease_database_failed(devices, exc)
            return frozenset()
        self._lease_failures = 0
        self._held_elsewhere.difference_update(claim.leased)
        for device, why in claim.quarantined.items():  # an earlier verdict: check it before giving up on it
            self.ui.note(f"[yellow]{device} is quarantined ({why}); checking its health[/yellow]")
            self._start_healing(device)
        for device, who in claim.held.items():
            self._held_by_someone_else(device, who)
        return claim.leased

    def _held_by_someone_else(self, device: str, who: str) -> None:
        if not self.policy.wait_for_leases:
            raise LeaseError(f"device {device!r} is leased by {who}; try again later, or see 'edgefarm devices status'")
        if device not in self._held_elsewhere:
            self._held_elsewhere.add(device)
            log.info("%s is leased by %s; waiting for it", device, who)
            self.ui.note(f"[yellow]{device} is leased by {who}; waiting for it[/yellow]")

    def _lease_database_failed(self, devices: Sequence[str], exc: Exception) -> None:
        """A blip is retried at the next poll; a database that keeps failing ends the run, saying so."""
        self._lease_failures += 1
        if self._lease_failures >= LEASE_DB_ATTEMPTS:
            raise LeaseError(f"the lease database failed {self._lease_failures} times in a row ({type(exc).__name__}: "
                             f"{exc}); no board was quarantined for it: check --leases and run again") from exc
        boards = devices[0] if len(devices) == 1 else f"{devices[0]} and {len(devices) - 1} more boards"
        self.ui.note(f"[yellow]{boards}: the lease database failed ({exc}); trying again[/yellow]")

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

    async def _run_on(self, job: FarmJob, device: str) -> JobEnd:
        session = self._sessions[device]
        try:
            client = session.client()
        except SecurityError as exc:  # this controller cannot dial the board as declared: no use retrying
            return JobEnd(job, device, "infrastructure", str(exc))
        try:
            return await self._benchmark(session, client, job, device)
        except AgentUnreachableError as exc:
            await session.redial()   # the agent restarted or the link dropped: the next job dials afresh
            return JobEnd(job, device, TRANSPORT, str(exc))
        except AgentFaultError as exc:  # the board's disk is full, or the upload arrived damaged
            return JobEnd(job, device, "infrastructure", str(exc))
        except AgentRejectedError as exc:
            return JobEnd(job, device, "bad-input", str(exc))

    async def _benchmark(self, session: BoardSession, client: AsyncAgentClient, job: FarmJob, device: str) -> JobEnd:
        board = self.devices[device]
        try:
            backend = choose_backend(board.backends, job.planned.artifact_format, job.planned.backend or None)
        except NoBackendError as exc:  # planning filters pools by backend, so only a pinned board gets here
            return JobEnd(job, device, "bad-input", f"{device}: {exc}")
        record = replace(job.record, device=device, backend=backend)
        self._write(self.store.set_job_device, record.id, device, backend)
        info = await session.describe()
        require_protocol(device, info, job.inputs, self.measure.profile)
        refusal = runtime_refusal(device, info, backend)
        if refusal:  # devices.yaml lists the backend, the board's Describe says it cannot run it
            return JobEnd(replace(job, record=record), device, "bad-input", refusal)
        files = [(job.artifact, record.artifact_sha256), *job.inputs.files()]
        if job.eval_npz is not None:
            files.append((job.eval_npz, job.eval_sha))
        self._bytes_uploaded += await client.ensure_all_uploaded(files)
        settings = board.backend_options.get(backend, BackendSettings(backend))
        end = await self._measure(client, replace(job, record=record), device, settings)
        if end.kind == TRANSPORT:   # the stream was cut without a result: most likely the agent went away
            await session.redial()
        return end

    async def _measure(self, client: AsyncAgentClient, job: FarmJob, device: str,
                       settings: BackendSettings) -> JobEnd:
        record = job.record
        progress = self.ui.phase_bar(f"measure {record.variant} on {device}") if self.single_board else None
        spec = build_spec(record, self.measure, settings, job.eval_sha, job.inputs)
        async with aclosing(client.benchmark(spec)) as events:   # closed at once: the channel lives on
            async for event in events:
                if isinstance(event, Progress):
                    if progress:
                        progress(event.phase, event.fraction)
                elif isinstance(event, BenchmarkResult):
                    return JobEnd(job, device, "done", result=event)
                elif isinstance(event, Failure):
                    return JobEnd(job, device, event.kind, event.message)
        return JobEnd(job, device, TRANSPORT, "the agent closed the stream without a result")

    async def _settle(self, end: JobEnd, pending: list[FarmJob], outcome: FarmOutcome) -> None:
        if end.kind == "done":
            self._write(self.store.add_result, end.job.record, end.result)
            self._streak[end.device] = 0
            outcome.done += 1
            return
        await self._count_failure(end.device, end, outcome)
        retry = end.kind not in NOT_RETRIED and end.job.attempts + 1 < self.policy.attempts
        if retry:
            delay = self.policy.backoff_s * 2 ** end.job.attempts
            pending.append(replace(end.job, attempts=end.job.attempts + 1, not_before=self.seams.clock() + delay,
                                   failed_on=(*end.job.failed_on, end.device)))
            self.ui.note(f"[yellow]{end.job.planned.key} on {end.device}: {end.kind}: {end.message}; "
                         f"retrying in {delay:.1f} s[/yellow]")
        else:
            self._fail(end, outcome)

    async def _count_failure(self, device: str, end: JobEnd, outcome: FarmOutcome) -> None:
        if end.kind == "bad-input":
            return  # the artifact's fault, not the board's
        self._streak[device] = self._streak.get(device, 0) + 1
        if self._streak[device] >= self.policy.quarantine_after and device not in self._quarantined:
            reason = f"{self._streak[device]} failures in a row, last: {end.kind}: {end.message[:200]}"
            await self._run_leases.quarantine(device, reason)
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
        await self._sessions[device].redial()   # back in service, it is described afresh (it may be upgraded)
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
        stored, with when the next is due, for `edgefarm devices status`: once its verdict is in, a
        check is stored even if the run ends meanwhile (_close_run waits for it)."""
        ok, why = await self.seams.health_check(self.devices[device])
        log.info("health check of %s: %s", device, "passed" if ok else f"failed: {why}")
        verdict = asyncio.ensure_future(self._store_check(device, ok, why, next_in_s))
        self._verdicts.add(verdict)
        verdict.add_done_callback(self._verdicts.discard)
        await asyncio.shield(verdict)
        return ok

    async def _store_check(self, device: str, ok: bool, why: str, next_in_s: float) -> None:
        try:
            await self._run_leases.record_check(device, ok, why, f"{self.owner} (quarantine)",
                                                None if ok else next_in_s)
        except LeaseError as exc:  # the check itself counts; only its record is lost
            log.warning("could not store the health check of %s: %s", device, exc)
        if ok:
            await self._run_leases.unquarantine(device)
            self._quarantined.discard(device)
            self._unhealthy.discard(device)
            self._streak[device] = 0
            self.ui.note(f"[green]{device} passed its health check and is back in service[/green]")
        else:
            self.ui.note(f"[red]{device} failed its health check: {why}[/red]")

    def _fail(self, end: JobEnd, outcome: FarmOutcome) -> None:
        self._write(self.store.add_failure, end.job.record, end.kind, end.message)
        outcome.failed.append(end)
        log.info("%s failed on %s (%s): %s", end.job.planned.key, end.device, end.kind, end.message)
        if not self.single_board:
            self.ui.note(f"[red]{end.job.planned.key} failed on {end.device} ({end.kind}): {end.message}[/red]")
