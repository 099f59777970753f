"""P6: one controller driving 100 real agent processes on loopback through the real FarmRunner
(grpc.aio fan-out, SQLite leases kept alive by one renewing thread, the SQLite results store, retries), with the
simulated backend (20 ms per inference), so the figure is about scheduling, not about a model.

P6-overhead-ms, the controller's time per job outside the agents' calls: per board, the wall time
from the run's start to its last job's end minus the time spent inside calls to that board
(connect + Describe, HasArtifacts/upload, Benchmark up to its last reply, as the controller saw
them), summed over boards, divided by the jobs. What is left is what the controller adds: handing
out the first wave, leases, storing, and giving a freed board its next job. The reference string
splits it into the first-wave dispatch and the turnaround between a board's jobs.

Two boxes' worth of CPU on one: the controller's threads are pinned to one core and the agents'
threads (and so the worker process each job spawns) to the others, as on separate hosts. Shared,
100 agents' workers starve the controller's event loop and the figure measures the CPU queue
(seconds per job on 2 cores). Each agent answers one Describe before the clock starts: its first
one imports every runtime to list them, a once-per-agent cost.
P6-lost: jobs planned - results stored - failures recorded.

Each agent runs in a session of its own, as on another host: under autogroup scheduling (Linux's
default) a session's processes share one CPU share, so a hundred agents in the controller's session
cut its share of its own core to about 1/200th, and anything else running on the machine (another
engineer's tests) starved it for seconds at a time.

P6-1000-overhead-ms and P6-1000-lost: the same run with 1,000 simulated agents served by
HOSTS processes (benchmarks/agent_host.py: the agent's own gRPC service and server, many to a
process, each job run in-thread rather than in a worker process of its own, which for a thousand
agents on one core would only measure the CPU queue).
"""
from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from benchmarks.agent_host import AgentHost
from benchmarks.figures import NO_GOAL, Figure
from edgefarm.agent.backends.simulated import PROVIDER, write_artifact
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentClient, AsyncAgentClient
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import DeviceInfo, JobSpec, Progress
from edgefarm.controller.agents.wire import Event
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm import FarmJob, FarmOutcome, FarmRunner, RetryPolicy, RunnerSeams
from edgefarm.controller.leases import open_lease_manager, sqlite_url
from edgefarm.controller.planning.run_plan import MeasureSettings
from edgefarm.controller.planning.scheduler import PlannedJob
from edgefarm.controller.results.store import JobRecord, ResultStore, StoredResult, VariantRecord

AGENTS = 100
HOSTED_AGENTS = 1000
HOSTS = 4                # processes serving the 1,000 agents
JOBS_PER_AGENT = 2
LATENCY_MS = 20.0
START_BATCH = 16         # agents booting at once: more only queues on 2 cores
# First inference + 1 warm-up + 5 measured iterations: 140 ms of simulated work per job.
MEASURE = MeasureSettings(warmup_iterations=1, warmup_seconds=0.001, min_iterations=5, min_seconds=0.001,
                          max_iterations=5, timeout_seconds=120)
POOL = "pool:scale"


@dataclass(frozen=True)
class Call:
    kind: str            # connect, upload, benchmark
    start: float
    end: float


@dataclass
class CallLog:
    """Per board, every call the controller made to it, in order (one job per board at a time,
    its calls in sequence: they never overlap)."""
    calls: dict[str, list[Call]] = field(default_factory=lambda: defaultdict(list))

    def add(self, device: str, kind: str, start: float) -> None:
        self.calls[device].append(Call(kind, start, time.perf_counter()))


@dataclass(frozen=True)
class Setup:
    what: str                # the agents, for the note
    how: str                 # the pinning


@dataclass(frozen=True)
class ScaleRun:
    agents: int
    jobs: int
    outcome: FarmOutcome
    log: CallLog
    wall_start: float
    lost: int
    setup: Setup


@dataclass(frozen=True)
class Agents:
    addresses: list[str]
    pids: list[int]          # the processes serving them (pinned apart from the controller)
    what: str                # how they are served, for the figure's note


def scale_figures(cache_dir: Path) -> list[Figure]:
    hundred = run_scale(cache_dir / "p6", local_agents(cache_dir / "p6" / "agents", AGENTS))
    thousand = run_scale(cache_dir / "p6-1000", hosted_agents(cache_dir / "p6-1000" / "agents", HOSTED_AGENTS))
    return [*run_figures("P6", hundred), *run_figures("P6-1000", thousand)]


def run_figures(prefix: str, run: ScaleRun) -> list[Figure]:
    overhead_ms = overhead_per_job_ms(run.log, run.wall_start, run.jobs)
    dispatch_ms, turnaround_ms = first_dispatch_ms(run.log, run.wall_start), turnaround_ms_mean(run.log)
    return [
        Figure(f"{prefix}-overhead-ms", f"scheduling overhead per job, {run.agents} agents", overhead_ms, "ms",
               f"Σ per board (run start → last job end − time inside calls to it) ÷ {run.jobs} jobs; of it, "
               f"first-wave dispatch {dispatch_ms:.0f} ms per board, then {turnaround_ms:.0f} ms mean from a job's end "
               f"to the board's next call; {run.setup.what}, simulated backend {LATENCY_MS:g} ms/inference, "
               f"{run.outcome.done} done, {len(run.outcome.failed)} failed; {run.setup.how}",
               "<= 20" if run.agents <= 100 else NO_GOAL),   # the issue sets the goal at 100 agents
        Figure(f"{prefix}-lost", f"results lost, {run.agents} agents", float(run.lost), "jobs",
               f"{run.jobs} planned − results stored − failures recorded, SQLite results store", "<= 0"),
    ]


def run_scale(cache_dir: Path, agents_cm: AbstractContextManager[Agents]) -> ScaleRun:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with agents_cm as agents:
        names = [f"sim-{i:04d}" for i in range(len(agents.addresses))]
        devices = {name: _device(name, address) for name, address in zip(names, agents.addresses, strict=True)}
        warm_up(devices)
        store = ResultStore(cache_dir / "results.sqlite")
        try:
            run_id, jobs = plan_jobs(store, write_artifact(cache_dir / "sim-20ms.json", LATENCY_MS), names)
            with pinned_apart(agents.pids) as pinned:
                log, wall_start, outcome = run_farm(store, cache_dir, devices, jobs)
            lost = len(jobs) - len(checked_results(store, run_id)) - len(store.failures(run_id))
        finally:
            store.close()
    return ScaleRun(len(names), len(jobs), outcome, log, wall_start, lost, Setup(agents.what, pinned))


@contextmanager
def local_agents(root: Path, count: int) -> Iterator[Agents]:
    """`count` real agent processes, booted START_BATCH at a time; every one spawned is stopped at exit."""
    with ExitStack() as stack:
        agents = [LocalAgent(root / f"agent-{i:03d}", own_session=True) for i in range(count)]
        for first in range(0, count, START_BATCH):
            batch = agents[first:first + START_BATCH]
            for agent in batch:
                stack.callback(agent.start().stop)  # registered the moment it is spawned
            for agent in batch:
                agent.wait_ready()
        yield Agents([agent.address for agent in agents], [agent.pid for agent in agents],
                     f"{count} agent processes")


@contextmanager
def hosted_agents(root: Path, count: int) -> Iterator[Agents]:
    """`count` simulated agents served by HOSTS processes (benchmarks/agent_host.py); stopped at exit."""
    with ExitStack() as stack:
        share = -(-count // HOSTS)
        hosts = [AgentHost(min(share, count - first), root / f"host-{n}")
                 for n, first in enumerate(range(0, count, share))]
        for host in hosts:
            stack.callback(host.start().stop)
        addresses = [address for host in hosts for address in host.wait_ready()]
        yield Agents(addresses, [host.pid for host in hosts],
                     f"{count} agents served by {len(hosts)} processes, jobs in-thread")


def warm_up(devices: dict[str, Device]) -> None:
    """One Describe per agent before the clock starts: its first one imports every runtime to list
    them (~0.3 s of CPU), a once-per-agent cost that is not scheduling."""
    def describe(device: Device) -> None:
        client = AgentClient(device.name, device.address)
        try:
            client.connect()
        finally:
            client.close()

    with ThreadPoolExecutor(START_BATCH) as pool:
        list(pool.map(describe, devices.values()))


@contextmanager
def pinned_apart(agent_pids: list[int]) -> Iterator[str]:
    """The controller's threads on one core, the agents (and the workers they spawn, which inherit
    it) on the rest. Not nice(1): each worker starts its own session, and with autogroup
    scheduling every session gets an equal share whatever its nice value."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield "not pinned: one core, shared by the controller and every agent"
        return
    # Every thread: an agent spawns a job's worker from a gRPC thread, and the worker inherits
    # that thread's cores; the controller's event loop waits on gRPC's threads.
    for pid in agent_pids:
        for tid in _threads(pid):
            _pin(tid, cores[1:])
    for tid in _threads(os.getpid()):
        _pin(tid, cores[:1])
    try:
        yield f"controller pinned to 1 core, the agents (and any workers they spawn) to {len(cores) - 1}"
    finally:
        for tid in _threads(os.getpid()):
            _pin(tid, cores)


def _threads(pid: int) -> list[int]:
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def _pin(pid: int, cores: list[int]) -> None:
    try:
        os.sched_setaffinity(pid, cores)
    except ProcessLookupError:
        pass  # a thread that ended meanwhile


def _device(name: str, address: str) -> Device:
    host, port = address.rsplit(":", 1)
    # Built in code: devices.yaml cannot name the simulated backend, so no real farm can pick it.
    return Device(name, host, int(port), {"role": "scale"}, ("simulated",))


def plan_jobs(store: ResultStore, artifact: Path, names: list[str]) -> tuple[str, list[FarmJob]]:
    run_id = store.new_run(f"benchmark P6: {len(names)} simulated agents", kind="benchmark")
    sha, jobs = sha256_file(artifact), []
    for n in range(len(names) * JOBS_PER_AGENT):
        model = f"sim-job-{n:04d}"
        store.add_variant(run_id, VariantRecord(model, "simulated", {}, sha, artifact.stat().st_size, None, 0.0))
        record = JobRecord(uuid.uuid4().hex, run_id, model, "simulated", POOL, "", sha)
        store.add_job(record, target=POOL)
        jobs.append(FarmJob(PlannedJob(model, "simulated", POOL, tuple(names), artifact.suffix), record, artifact,
                            None, ""))
    return run_id, jobs


def run_farm(store: ResultStore, cache_dir: Path, devices: dict[str, Device],
             jobs: list[FarmJob]) -> tuple[CallLog, float, FarmOutcome]:
    log = CallLog()
    leases = open_lease_manager(sqlite_url(cache_dir / "leases.sqlite"))
    # Only a timing probe is swapped in: the runner builds its clients through its seams.
    runner = FarmRunner(store, leases, devices, MEASURE, RunConsole(quiet=True), owner="benchmark-p6",
                        policy=RetryPolicy(), seams=RunnerSeams(client=timed_client_class(log).for_device))
    try:
        wall_start = time.perf_counter()
        outcome = asyncio.run(runner.run(jobs))
    finally:
        leases.close()
    return log, wall_start, outcome


def timed_client_class(log: CallLog) -> type[AsyncAgentClient]:
    class TimedAgentClient(AsyncAgentClient):
        async def connect(self) -> DeviceInfo:
            start = time.perf_counter()
            try:
                return await super().connect()
            finally:
                log.add(self.name, "connect", start)

        async def ensure_all_uploaded(self, files: Sequence[tuple[Path, str]], on_bytes=None) -> int:
            start = time.perf_counter()
            try:
                return await super().ensure_all_uploaded(files, on_bytes)
            finally:
                log.add(self.name, "upload", start)

        async def benchmark(self, spec: JobSpec) -> AsyncIterator[Event]:
            start = time.perf_counter()
            async for event in super().benchmark(spec):
                if not isinstance(event, Progress):  # the runner stops reading at this one
                    log.add(self.name, "benchmark", start)
                yield event

    return TimedAgentClient


def overhead_per_job_ms(log: CallLog, wall_start: float, jobs: int) -> float:
    outside = sum(calls[-1].end - wall_start - sum(c.end - c.start for c in calls) for calls in log.calls.values())
    return outside / jobs * 1000


def first_dispatch_ms(log: CallLog, wall_start: float) -> float:
    """Run start to a board's first call, averaged over boards: handing out the first wave."""
    return statistics.mean(calls[0].start - wall_start for calls in log.calls.values()) * 1000


def turnaround_ms_mean(log: CallLog) -> float:
    """A Benchmark call's end to the board's next call (the next job's HasArtifacts), averaged."""
    gaps = [after.start - before.end for calls in log.calls.values()
            for before, after in pairwise(calls) if before.kind == "benchmark"]
    return statistics.mean(gaps) * 1000 if gaps else float("nan")


def checked_results(store: ResultStore, run_id: str) -> list[StoredResult]:
    results = store.results(run_id)
    real = [r.job.id for r in results if r.result.provider != PROVIDER]
    if real:  # the simulated backend must never pass for a real measurement
        raise RuntimeError(f"{len(real)} P6 results do not say they are simulated")
    return results
