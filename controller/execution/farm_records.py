"""The farm runner's records: its policy, a job as it travels between boards, how a job ended, the
seams tests replace, and what a run did."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgefarm.controller.agents.canary import health_check
from edgefarm.controller.agents.client import AsyncAgentClient
from edgefarm.controller.agents.records import BenchmarkResult
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.planning.job_inputs import JobInputs
from edgefarm.controller.planning.scheduler import PlannedJob
from edgefarm.controller.results.store import JobRecord

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


DEFAULT_POLICY = RetryPolicy()


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
    """What the runner takes from outside: time, a board's client, and the health check. The runner
    dials a board's client once per run and keeps it (controller/execution/board_session.py)."""

    clock: Callable[[], float] = time.monotonic
    client: Callable[[Device], AsyncAgentClient] = AsyncAgentClient.for_device
    health_check: Callable[[Device], Awaitable[tuple[bool, str]]] = health_check


@dataclass
class FarmOutcome:
    done: int = 0
    failed: list[JobEnd] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
