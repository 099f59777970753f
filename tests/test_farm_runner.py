"""The farm runner's own rules, on plain data: lease-database outages, retries, backoff and quarantine."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edgefarm.controller.agents.client import AgentUnreachableError
from edgefarm.controller.agents.records import (
    BenchmarkResult,
    DeviceInfo,
    Failure,
    JobSpec,
    LatencyStats,
    Progress,
    RuntimeInfo,
)
from edgefarm.controller.agents.security import SecurityError
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm import (
    LEASE_DB_ATTEMPTS,
    FarmJob,
    FarmOutcome,
    FarmRunner,
    RetryPolicy,
    RunnerSeams,
)
from edgefarm.controller.leases import LeaseError
from edgefarm.controller.leases.sqlite import SqliteLeaseManager
from edgefarm.controller.planning.run_plan import MeasureSettings
from edgefarm.controller.planning.scheduler import PlannedJob
from edgefarm.controller.results.store import JobRecord, ResultStore, VariantRecord

BOARDS = ("board-a", "board-b")


class OutageLeases(SqliteLeaseManager):
    """A real SQLite lease database whose lease-taking step fails, as a lost PostgreSQL server would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.attempts = 0

    def _take_all_free(self, *args: object) -> None:
        self.attempts += 1
        raise sqlite3.OperationalError("unable to open database file")


def _runner(tmp_path: Path, leases: SqliteLeaseManager) -> tuple[FarmRunner, list[FarmJob]]:
    store = ResultStore(tmp_path / "results.sqlite")
    devices = {name: Device(name, "127.0.0.1", 9, {"pool": "p"}, ("onnxruntime",)) for name in BOARDS}
    run_id = store.new_run("farm test", "nightly")
    jobs = []
    for recipe in ("fp32", "int8-static"):
        record = JobRecord(f"job-{recipe}", run_id, "m", recipe, "pool:p", "", "a" * 64)
        store.add_job(record, target="pool:p")
        jobs.append(FarmJob(PlannedJob("m", recipe, "pool:p", BOARDS), record, tmp_path / "m.onnx", None, ""))
    runner = FarmRunner(store, leases, devices, MeasureSettings(), RunConsole(quiet=True), owner="test",
                        policy=RetryPolicy(poll_s=0.01))
    return runner, jobs


def test_a_lease_database_outage_ends_the_run_and_quarantines_no_board(tmp_path):
    leases = OutageLeases(tmp_path / "leases.sqlite")
    runner, jobs = _runner(tmp_path, leases)
    with pytest.raises(LeaseError, match=f"the lease database failed {LEASE_DB_ATTEMPTS} times in a row "
                                         r"\(OperationalError: unable to open database file\); no board was "
                                         "quarantined for it"):
        asyncio.run(runner.run(jobs))
    assert leases.attempts == LEASE_DB_ATTEMPTS
    assert [state.status for state in leases.states(list(BOARDS))] == ["idle", "idle"]


# --- retry, backoff and quarantine, with a fake client and a ticking clock ---------------------------

class TickingClock:
    """Monotonic time that moves 0.1 s each time it is read: backoff waits end without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.1
        return self.now


class ScriptedBoards:
    """Fake AsyncAgentClients: each board answers its jobs with the next outcome of its script
    ("ok", "unreachable", "backend-crash", "bad-input"), and records what it was asked."""

    def __init__(self, scripts: dict[str, list[str]], job_s: float = 0.0) -> None:
        self.scripts, self.ran = scripts, []
        self.job_s = job_s   # how long each job measures (0: at once)
        self.dialled: list[str] = []     # one entry per client made (a channel, on a real board)
        self.connected: list[str] = []   # one per connect + Describe
        self.closed: list[str] = []

    def client(self, board: Device) -> ScriptedClient:
        self.dialled.append(board.name)
        return ScriptedClient(self, board.name)


class ScriptedClient:
    def __init__(self, boards: ScriptedBoards, device: str) -> None:
        self.boards, self.device = boards, device

    async def connect(self) -> DeviceInfo:
        self.boards.connected.append(self.device)
        return DeviceInfo(hostname=self.device, protocol_version="edgefarm.v1.1")

    async def ensure_all_uploaded(self, files: list[tuple[Path, str]]) -> int:
        return 0

    async def benchmark(self, spec: JobSpec):
        outcome = self.boards.scripts[self.device].pop(0)
        self.boards.ran.append((spec.job_id, self.device, spec.backend, outcome))
        if outcome == "unreachable":
            raise AgentUnreachableError(f"device {self.device!r}: unavailable")
        yield Progress("measure", 0.5)
        await asyncio.sleep(self.boards.job_s)
        if outcome == "ok":
            yield BenchmarkResult(spec.job_id, spec.backend, "CPUExecutionProvider", (1_000_000,) * 10,
                                  LatencyStats(count=10, p50_ms=1.0), fps=1000.0)
        else:
            yield Failure(outcome, f"{outcome} on {self.device}")

    async def close(self) -> None:
        self.boards.closed.append(self.device)


class NotingConsole(RunConsole):
    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def _scripted_runner(tmp_path: Path, boards: ScriptedBoards, recipes: tuple[str, ...], candidates: tuple[str, ...],
                     health=None, **policy) -> tuple[FarmRunner, list[FarmJob], NotingConsole]:
    store = ResultStore(tmp_path / "results.sqlite")
    devices = {name: Device(name, "127.0.0.1", 9, {"pool": "p"}, ("onnxruntime",)) for name in boards.scripts}
    run_id = store.new_run("farm test", "nightly")
    jobs = []
    for recipe in recipes:
        record = JobRecord(f"job-{recipe}", run_id, "m", recipe, "pool:p", "", "a" * 64)
        store.add_variant(run_id, VariantRecord("m", recipe, {}, "a" * 64, 1, None, 0.0))
        store.add_job(record, target="pool:p")
        jobs.append(FarmJob(PlannedJob("m", recipe, "pool:p", candidates), record, tmp_path / "m.onnx", None, ""))
    ui = NotingConsole()
    seams = RunnerSeams(clock=TickingClock(), client=boards.client, health_check=health or _never_called)
    runner = FarmRunner(store, SqliteLeaseManager(tmp_path / "leases.sqlite"), devices, MeasureSettings(), ui,
                        owner="test", policy=RetryPolicy(poll_s=0.001, **policy), seams=seams)
    return runner, jobs, ui


async def _never_called(board: Device) -> tuple[bool, str]:
    device = board.name
    raise AssertionError(f"no health check was due for {device}")


def test_a_transport_failure_is_retried_on_another_board_of_its_pool_with_doubling_backoff(tmp_path):
    boards = ScriptedBoards({"board-a": ["unreachable"], "board-b": ["unreachable"], "board-c": ["ok"]})
    pool = ("board-a", "board-b", "board-c")
    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("fp32",), pool, quarantine_after=10, attempts=3)
    outcome = asyncio.run(runner.run(jobs))
    assert (outcome.done, outcome.failed) == (1, [])
    tried = [device for _, device, _, _ in boards.ran]
    assert sorted(tried[:2]) == ["board-a", "board-b"] and tried[2] == "board-c"  # a retry avoids failed boards
    assert [note.split("retrying in ")[1] for note in ui.notes if "retrying" in note] == \
        ["0.5 s[/yellow]", "1.0 s[/yellow]"]
    (stored,) = runner.store.results(jobs[0].record.run_id)
    assert (stored.job.device, stored.job.backend) == ("board-c", "onnxruntime")


def test_a_job_out_of_attempts_fails_with_its_last_reason(tmp_path):
    boards = ScriptedBoards({"board-a": ["unreachable"] * 2})
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("fp32",), ("board-a",), quarantine_after=10, attempts=2)
    outcome = asyncio.run(runner.run(jobs))
    assert outcome.done == 0 and [(end.kind, end.message) for end in outcome.failed] == \
        [("transport", "device 'board-a': unavailable")]
    (job, kind, message) = runner.store.failures(jobs[0].record.run_id)[0]
    assert (job.device, kind) == ("board-a", "transport")


def test_bad_input_is_not_retried_and_never_quarantines_the_board(tmp_path):
    boards = ScriptedBoards({"board-a": ["bad-input"] * 3 + ["ok"]})
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("a", "b", "c", "d"), ("board-a",), quarantine_after=2)
    outcome = asyncio.run(runner.run(jobs))
    assert outcome.done == 1 and [end.kind for end in outcome.failed] == ["bad-input"] * 3
    assert outcome.quarantined == [] and len(boards.ran) == 4


def test_failures_in_a_row_quarantine_a_board_until_its_health_check_passes(tmp_path):
    checked: list[str] = []

    async def passes(board: Device) -> tuple[bool, str]:
        device = board.name
        checked.append(device)
        return True, "ok"

    boards = ScriptedBoards({"board-a": ["backend-crash"] * 2 + ["ok"] * 4, "board-b": ["ok"] * 6})
    runner, jobs, ui = _scripted_runner(tmp_path, boards, tuple("abcdef"), ("board-a", "board-b"), health=passes,
                                        quarantine_after=2)
    outcome = asyncio.run(runner.run(jobs))
    assert outcome.quarantined == ["board-a"] and checked == ["board-a"]
    assert outcome.done == 4 and [end.kind for end in outcome.failed] == ["backend-crash"] * 2
    assert any("board-a passed its health check and is back in service" in note for note in ui.notes)
    assert runner.leases.states(["board-a"])[0].status == "idle"   # the quarantine is lifted in the database too


def test_a_health_check_still_running_when_the_night_ends_is_cancelled_not_lost(tmp_path):
    started, cancelled = asyncio.Event(), []

    async def hangs(board: Device) -> tuple[bool, str]:
        device = board.name
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(device)
            raise
        return True, "ok"

    boards = ScriptedBoards({"board-a": ["backend-crash"] * 2, "board-b": ["ok"] * 3})
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("a", "b", "c", "d", "e"), ("board-a", "board-b"),
                                       health=hangs, quarantine_after=2)
    outcome = asyncio.run(runner.run(jobs))
    assert outcome.quarantined == ["board-a"] and outcome.done == 3
    assert started.is_set() and cancelled == ["board-a"] and not runner._health_checks


def test_a_health_check_that_raises_is_reported(tmp_path):
    async def explodes(board: Device) -> tuple[bool, str]:
        raise RuntimeError("the canary's temp dir vanished")

    boards = ScriptedBoards({"board-a": ["backend-crash"] * 2, "board-b": ["ok"] * 3})
    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("a", "b", "c", "d", "e"), ("board-a", "board-b"),
                                        health=explodes, quarantine_after=2)
    asyncio.run(runner.run(jobs))
    assert any("a health check failed: RuntimeError: the canary's temp dir vanished" in note for note in ui.notes)


def test_a_board_found_quarantined_is_health_checked_and_returns_to_service_by_itself(tmp_path):
    """Quarantine that heals: no person has to run `devices unquarantine` after a blip at night."""
    checked: list[str] = []

    async def passes(board: Device) -> tuple[bool, str]:
        device = board.name
        checked.append(device)
        return True, "ok"

    boards = ScriptedBoards({"board-a": ["ok"] * 2})
    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("a", "b"), ("board-a",), health=passes)
    runner.leases.quarantine("board-a", "3 failures in a row last night")   # as another controller left it
    outcome = asyncio.run(runner.run(jobs))
    assert checked == ["board-a"] and (outcome.done, outcome.failed) == (2, [])
    assert runner.leases.states(["board-a"])[0].status == "idle"


def test_jobs_wait_for_a_quarantined_boards_check_and_fail_only_once_it_fails(tmp_path):
    checks: list[str] = []

    async def fails(board: Device) -> tuple[bool, str]:
        device = board.name
        checks.append(device)
        return False, f"device {device!r}: no agent answered"

    boards = ScriptedBoards({"board-a": []})
    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("a",), ("board-a",), health=fails)
    runner.leases.quarantine("board-a", "USB resets")
    outcome = asyncio.run(runner.run(jobs))
    assert checks == ["board-a"] and boards.ran == []
    assert [(end.kind, end.message) for end in outcome.failed] == [
        ("infrastructure", "every board that can run it is quarantined and failed its health check")]
    assert any("board-a failed its health check: device 'board-a': no agent answered" in note for note in ui.notes)
    assert runner.leases.states(["board-a"])[0].status == "quarantined"
    stored = runner.leases.last_checks(["board-a"])["board-a"]   # for `edgefarm devices status`
    assert not stored.passed and "no agent answered" in stored.detail and stored.checked_by == "test (quarantine)"
    assert stored.next_due is not None and stored.next_due > stored.checked_at


def test_a_failed_check_is_repeated_with_backoff_while_the_run_lasts(tmp_path):
    outcomes = iter([False, False, True])
    checks: list[float] = []
    clock = TickingClock()

    async def flaky(board: Device) -> tuple[bool, str]:
        device = board.name
        checks.append(device)
        return next(outcomes), "canary failed"

    # Jobs that take a little time: the run must outlast three checks (after 1, 2 and 4 ms).
    boards = ScriptedBoards({"board-a": ["backend-crash"] * 2 + ["ok"] * 40, "board-b": ["ok"] * 40}, job_s=0.005)
    runner, jobs, ui = _scripted_runner(tmp_path, boards, tuple(f"j{i}" for i in range(40)), ("board-a", "board-b"),
                                        health=flaky, quarantine_after=2, recheck_s=0.001, recheck_max_s=0.004)
    runner.seams = RunnerSeams(clock=clock, client=boards.client, health_check=flaky)
    asyncio.run(runner.run(jobs))
    assert checks[:3] == ["board-a"] * 3
    assert any("board-a passed its health check and is back in service" in note for note in ui.notes)
    stored = runner.leases.last_checks(["board-a", "board-b"])
    assert list(stored) == ["board-a"] and stored["board-a"].passed and stored["board-a"].next_due is None


def test_a_job_waiting_on_a_board_someone_else_holds_says_who_and_gives_up_after_lease_wait(tmp_path):
    boards = ScriptedBoards({"board-a": []})
    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("fp32",), ("board-a",), lease_wait_s=2.0)
    runner.leases.acquire("board-a", "alice@laptop", "debugging the detector", ttl_s=600)
    outcome = asyncio.run(runner.run(jobs))
    assert boards.ran == [] and [(end.kind, end.message) for end in outcome.failed] == [
        ("infrastructure", "waited 2 s for board-a, leased by others (--lease-wait)")]
    waits = [note for note in ui.notes if "waiting for it" in note]
    assert len(waits) == 1 and "board-a is leased by alice@laptop (debugging the detector) for" in waits[0]


def test_without_a_lease_wait_a_job_waits_until_the_board_is_free(tmp_path):
    boards = ScriptedBoards({"board-a": ["ok"]})
    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("fp32",), ("board-a",))
    held = runner.leases.acquire("board-a", "alice@laptop", "debugging", ttl_s=600)

    async def run_then_release() -> FarmOutcome:
        night = asyncio.ensure_future(runner.run(jobs))
        while not any("waiting for it" in note for note in ui.notes):
            await asyncio.sleep(0.001)
        runner.leases.release(held)
        return await night

    outcome = asyncio.run(run_then_release())
    assert outcome.done == 1 and outcome.failed == []


# --- one channel per board, leases by the wave, the lease database off the event loop ----------------

class CountingLeases(SqliteLeaseManager):
    """A real SQLite lease database that counts its statements and notes the threads they ran on."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[tuple[str, int]] = []   # (method, how many boards)
        self.threads: set[str] = set()

    def _note(self, name: str, boards: int) -> None:
        self.calls.append((name, boards))
        self.threads.add(threading.current_thread().name)

    def acquire_many(self, devices, *args, **kwargs):
        self._note("acquire_many", len(devices))
        return super().acquire_many(devices, *args, **kwargs)

    def release_many(self, leases):
        self._note("release_many", len(leases))
        return super().release_many(leases)

    def states(self, devices):
        self._note("states", len(devices))
        return super().states(devices)

    def _take_first_free(self, *args):
        raise AssertionError("a farm run takes its boards in waves, not one by one")


def _counted_runner(tmp_path: Path, boards: ScriptedBoards, recipes: tuple[str, ...],
                    **policy) -> tuple[FarmRunner, list[FarmJob], NotingConsole, CountingLeases]:
    runner, jobs, ui = _scripted_runner(tmp_path, boards, recipes, tuple(boards.scripts), **policy)
    runner.leases = CountingLeases(tmp_path / "counted-leases.sqlite")
    return runner, jobs, ui, runner.leases


def test_each_board_is_dialled_and_described_once_per_run_and_closed_at_its_end(tmp_path):
    boards = ScriptedBoards({"board-a": ["ok"] * 6, "board-b": ["ok"] * 6}, job_s=0.001)
    runner, jobs, _ = _scripted_runner(tmp_path, boards, tuple("abcdef"), ("board-a", "board-b"))
    outcome = asyncio.run(runner.run(jobs))
    assert outcome.done == 6 and len(boards.ran) == 6
    assert sorted(boards.dialled) == sorted(boards.connected) == sorted(boards.closed) == ["board-a", "board-b"]


def test_a_transport_failure_closes_the_boards_channel_and_its_next_job_dials_afresh(tmp_path):
    boards = ScriptedBoards({"board-a": ["unreachable", "ok", "ok"]})
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("a", "b"), ("board-a",), quarantine_after=10)
    outcome = asyncio.run(runner.run(jobs))
    assert (outcome.done, outcome.failed) == (2, [])
    assert boards.dialled == boards.connected == boards.closed == ["board-a", "board-a"]


def test_a_wave_is_leased_in_one_statement_and_a_busy_board_keeps_its_lease_from_job_to_job(tmp_path):
    boards = ScriptedBoards({f"board-{n}": ["ok"] * 12 for n in range(4)}, job_s=0.002)
    runner, jobs, _, leases = _counted_runner(tmp_path, boards, tuple(f"j{n}" for n in range(12)))
    outcome = asyncio.run(runner.run(jobs))
    assert outcome.done == 12
    assert leases.calls[0] == ("acquire_many", 4)   # the first wave: every board at once
    assert [call for call in leases.calls if call[0] == "acquire_many"] == [("acquire_many", 4)]
    assert sum(boards for name, boards in leases.calls if name == "release_many") == 4
    assert [state.status for state in leases.states(list(boards.scripts))] == ["idle"] * 4


def test_the_lease_database_is_never_called_on_the_event_loops_thread(tmp_path):
    boards = ScriptedBoards({"board-a": ["ok"] * 4, "board-b": ["ok"] * 4})
    runner, jobs, _, leases = _counted_runner(tmp_path, boards, ("a", "b", "c", "d"))
    alice = SqliteLeaseManager(leases.path)   # another controller: the run must ask `states` who holds board-b
    alice.acquire("board-b", "alice@laptop", "debugging", ttl_s=0.3)
    outcome = asyncio.run(runner.run(jobs))
    assert outcome.done == 4 and {name for name, _ in leases.calls} >= {"acquire_many", "states", "release_many"}
    assert leases.threads and threading.main_thread().name not in leases.threads


def test_a_board_with_no_job_left_is_given_back_while_the_others_still_measure(tmp_path):
    boards = ScriptedBoards({"board-a": ["ok"] * 3, "board-b": ["ok"] * 3}, job_s=0.05)
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("a", "b", "c"), ("board-a", "board-b"))
    seen: list[list[str]] = []

    async def watch() -> FarmOutcome:
        night = asyncio.ensure_future(runner.run(jobs))
        while not night.done():
            seen.append([state.status for state in runner.leases.states(["board-a", "board-b"])])
            await asyncio.sleep(0.005)
        return await night

    outcome = asyncio.run(watch())
    assert outcome.done == 3 and ["leased", "leased"] in seen
    assert ["idle", "leased"] in seen or ["leased", "idle"] in seen   # one board's last job outlasted the other's


def test_a_board_that_cannot_be_dialled_as_declared_is_an_infrastructure_failure_retried_elsewhere(tmp_path):
    boards = ScriptedBoards({"board-a": [], "board-b": ["ok"]})

    def dial(board: Device) -> ScriptedClient:
        if board.name == "board-a":
            raise SecurityError("board-a declares security: tls, but this controller has no CA")
        return boards.client(board)

    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("fp32",), ("board-a", "board-b"))
    runner.seams = replace(runner.seams, client=dial)
    outcome = asyncio.run(runner.run(jobs))
    assert (outcome.done, outcome.failed) == (1, [])
    assert any("on board-a: infrastructure: board-a declares security: tls" in note for note in ui.notes)


def test_an_engineers_run_is_refused_at_once_on_a_board_someone_else_holds(tmp_path):
    boards = ScriptedBoards({"board-a": ["ok"]})
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("fp32",), ("board-a",), wait_for_leases=False)
    runner.leases.acquire("board-a", "alice@laptop", "debugging", ttl_s=600)
    with pytest.raises(LeaseError, match=r"device 'board-a' is leased by alice@laptop \(debugging\) for \d+ s "
                                         "more; try again later"):
        asyncio.run(runner.run(jobs))
    assert boards.ran == []


def test_a_resume_takes_over_its_dead_runs_leases_at_once(tmp_path):
    boards = ScriptedBoards({"board-a": ["ok"], "board-b": ["ok"]})
    runner, jobs, ui = _scripted_runner(tmp_path, boards, ("a", "b"), ("board-a", "board-b"), lease_wait_s=0.5)
    dead = runner.leases.acquire_many(["board-a", "board-b"], "ci@runner-3/RUN-1", "edgefarm farm run", ttl_s=600)
    runner.owner, runner.reclaim = "ci@runner-4/RUN-1", "/RUN-1"
    outcome = asyncio.run(runner.run(jobs))
    assert (outcome.done, outcome.failed) == (2, []) and not any("waiting for it" in note for note in ui.notes)
    assert runner.leases.renew_many(list(dead.values())).renewed == ()


class SlowLeases(SqliteLeaseManager):
    """Takes its time to lease a wave, as a distant PostgreSQL server would."""

    def acquire_many(self, *args, **kwargs):
        time.sleep(0.2)
        return super().acquire_many(*args, **kwargs)


def test_a_run_cancelled_while_its_boards_were_being_leased_still_gives_them_back(tmp_path):
    boards = ScriptedBoards({"board-a": ["ok"], "board-b": ["ok"]})
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("a", "b"), ("board-a", "board-b"))
    runner.leases = SlowLeases(tmp_path / "slow-leases.sqlite")

    async def ctrl_c_during_the_lease() -> None:
        night = asyncio.ensure_future(runner.run(jobs))
        await asyncio.sleep(0.05)
        night.cancel()
        with pytest.raises(asyncio.CancelledError):
            await night

    asyncio.run(ctrl_c_during_the_lease())
    assert boards.ran == []
    assert [state.status for state in runner.leases.states(["board-a", "board-b"])] == ["idle", "idle"]


class NoOnnxRuntimeClient(ScriptedClient):
    """A board whose devices.yaml lists onnxruntime, but whose agent says it cannot run it (Describe)."""

    uploads: list[str] = []

    async def connect(self) -> DeviceInfo:
        return DeviceInfo(hostname=self.device, protocol_version="edgefarm.v1.2",
                          runtimes=(RuntimeInfo("litert", "ai-edge-litert 2.3.0"),),
                          missing_runtimes=(("onnxruntime", "not installed: pip install 'edgefarm[onnxruntime]'"),))

    async def ensure_uploaded(self, path: Path, sha256: str) -> int:
        self.uploads.append(sha256)
        return 0


def test_a_runtime_the_boards_agent_lacks_is_refused_before_any_upload(tmp_path):
    boards = ScriptedBoards({"board-a": []})
    boards.client = lambda board: NoOnnxRuntimeClient(boards, board.name)
    runner, jobs, _ = _scripted_runner(tmp_path, boards, ("fp32",), ("board-a",))
    outcome = asyncio.run(runner.run(jobs))
    assert [(end.kind, end.message) for end in outcome.failed] == [(
        "bad-input", "board-a has no onnxruntime runtime: not installed: pip install 'edgefarm[onnxruntime]'; "
                     "nothing was uploaded (the agent runs litert)")]
    assert NoOnnxRuntimeClient.uploads == [] and boards.ran == [] and outcome.quarantined == []
