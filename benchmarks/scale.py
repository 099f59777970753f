"""P6: one controller driving 100 real agent processes on loopback through the real FarmRunner
(grpc.aio fan-out, SQLite leases with heartbeats, the SQLite results store, retries), with the
simulated backend (20 ms per inference) so the figure is about scheduling, not about a model.

P6-overhead-ms: per board, the wall time from the start of the run to its last job's end, minus
the time it spent inside Benchmark calls (as the controller saw them: call to final event), summed
over boards and divided by the jobs. What is left is everything the controller adds per job: the
first-wave ramp, taking and releasing leases, connect + Describe + HasArtifacts, storing, and the
wait until the loop hands a freed board its next job.
P6-lost: jobs planned - results stored - failures recorded.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from agent.backends.simulated import PROVIDER, write_artifact
from benchmarks.figures import Figure
from controller import farm
from controller.client import AgentClient, AsyncAgentClient, sha256_file
from controller.console import RunConsole
from controller.farm import FarmJob, FarmRunner, RetryPolicy
from controller.inventory import Device
from controller.leases import open_lease_manager, sqlite_url
from controller.local_agent import LocalAgent
from controller.pipeline import MeasureSettings
from controller.scheduler import PlannedJob
from controller.store import JobRecord, ResultStore, VariantRecord
from protos import agent_pb2 as pb

AGENTS = 100
JOBS_PER_AGENT = 2
LATENCY_MS = 20.0
START_BATCH = 16         # agents booting at once: more only queues on 2 cores
# First inference + 1 warm-up + 5 measured iterations: 140 ms of simulated work per job.
MEASURE = MeasureSettings(warmup_iterations=1, warmup_seconds=0.001, min_iterations=5, min_seconds=0.001,
                          max_iterations=5, timeout_seconds=120)
POOL = "pool:scale"


@dataclass(frozen=True)
class Span:
    device: str
    start: float
    end: float


@dataclass
class CallLog:
    """What the controller's clients saw: Benchmark calls and whole client lifetimes, per board."""
    benchmarks: list[Span]
    clients: list[Span]


def scale_figures(cache_dir: Path) -> list[Figure]:
    with local_agents(cache_dir / "p6-agents", AGENTS) as agents:
        devices = {f"sim-{i:03d}": _device(f"sim-{i:03d}", agent) for i, agent in enumerate(agents)}
        warm_up(devices)
        store = ResultStore(cache_dir / "p6-results.sqlite")
        try:
            run_id, jobs = plan_jobs(store, write_artifact(cache_dir / "sim-20ms.json", LATENCY_MS), list(devices))
            log, wall_start, outcome = run_farm(store, cache_dir, devices, jobs)
            lost = len(jobs) - len(checked_results(store, run_id)) - len(store.failures(run_id))
        finally:
            store.close()
    overhead_ms = overhead_per_job_ms(log, wall_start, len(jobs))
    return [
        Figure("P6-overhead-ms", f"scheduling overhead per job, {AGENTS} agents", overhead_ms, "ms",
               f"Σ over boards (run start → last job end − time inside Benchmark calls) ÷ {len(jobs)} jobs; "
               f"{AGENTS} agent processes, simulated backend {LATENCY_MS:g} ms/inference, {outcome.done} done, "
               f"{len(outcome.failed)} failed; all on this host's shared cores", "<= 20"),
        Figure("P6-lost", f"results lost, {AGENTS} agents", float(lost), "jobs",
               f"{len(jobs)} planned − results stored − failures recorded, SQLite results store", "<= 0"),
    ]


@contextmanager
def local_agents(root: Path, count: int) -> Iterator[list[LocalAgent]]:
    """`count` real agents, booted START_BATCH at a time; every one spawned is stopped at exit."""
    with ExitStack() as stack:
        agents: list[LocalAgent] = []
        for first in range(0, count, START_BATCH):
            batch = [LocalAgent(root / f"agent-{i:03d}").start() for i in range(first, min(first + START_BATCH, count))]
            for agent in batch:
                stack.callback(agent.stop)
            for agent in batch:
                agent.wait_ready()
            agents += batch
        yield agents


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


def _device(name: str, agent: LocalAgent) -> Device:
    host, port = agent.address.rsplit(":", 1)
    # Built in code: devices.yaml cannot name the simulated backend, so no real farm can pick it.
    return Device(name, host, int(port), {"role": "scale"}, ("simulated",))


def plan_jobs(store: ResultStore, artifact: Path, names: list[str]) -> tuple[str, list[FarmJob]]:
    run_id = store.new_run(f"benchmark P6: {AGENTS} simulated agents", kind="benchmark")
    sha, jobs = sha256_file(artifact), []
    for n in range(len(names) * JOBS_PER_AGENT):
        model = f"sim-job-{n:04d}"
        store.add_variant(run_id, VariantRecord(model, "simulated", {}, sha, artifact.stat().st_size, None, 0.0))
        record = JobRecord(uuid.uuid4().hex, run_id, model, "simulated", POOL, "", sha)
        store.add_job(record, target=POOL)
        jobs.append(FarmJob(PlannedJob(model, "simulated", POOL, tuple(names)), record, artifact, None, ""))
    return run_id, jobs


def run_farm(store: ResultStore, cache_dir: Path, devices: dict[str, Device],
             jobs: list[FarmJob]) -> tuple[CallLog, float, farm.FarmOutcome]:
    log = CallLog([], [])
    leases = open_lease_manager(sqlite_url(cache_dir / "p6-leases.sqlite"))
    runner = FarmRunner(store, leases, devices, MEASURE, RunConsole(quiet=True), owner="benchmark-p6",
                        policy=RetryPolicy())
    try:
        # Only a timing probe is swapped in: the runner builds its clients by this module-level name.
        with mock.patch.object(farm, "AsyncAgentClient", timed_client_class(log)):
            wall_start = time.perf_counter()
            outcome = asyncio.run(runner.run(jobs))
    finally:
        leases.close()
    return log, wall_start, outcome


def timed_client_class(log: CallLog) -> type[AsyncAgentClient]:
    class TimedAgentClient(AsyncAgentClient):
        def __init__(self, name: str, address: str) -> None:
            super().__init__(name, address)
            self._opened = time.perf_counter()

        async def benchmark(self, spec: pb.BenchmarkSpec) -> AsyncIterator[pb.BenchmarkEvent]:
            start = time.perf_counter()
            async for event in super().benchmark(spec):
                if event.WhichOneof("event") != "progress":  # the runner stops reading at this one
                    log.benchmarks.append(Span(self.name, start, time.perf_counter()))
                yield event

        async def close(self) -> None:
            await super().close()
            log.clients.append(Span(self.name, self._opened, time.perf_counter()))

    return TimedAgentClient


def overhead_per_job_ms(log: CallLog, wall_start: float, jobs: int) -> float:
    inside, last_end = defaultdict(float), {}
    for span in log.benchmarks:
        inside[span.device] += span.end - span.start
    for span in log.clients:
        last_end[span.device] = max(last_end.get(span.device, wall_start), span.end)
    outside = sum(end - wall_start - inside[device] for device, end in last_end.items())
    return outside / jobs * 1000


def checked_results(store: ResultStore, run_id: str) -> list:
    results = store.results(run_id)
    real = [r.job.id for r in results if r.result.provider != PROVIDER]
    if real:  # the simulated backend must never pass for a real measurement
        raise RuntimeError(f"{len(real)} P6 results do not say they are simulated")
    return results
