"""Faults on a farm of real agents, four boards each in its own network namespace (root only; see
tests/netns.py), one pool; each test aims its fault at one board (the victim) and checks that the
healthy boards finish, that the victim's job moves to another board of the pool with its reason
said, and that no result already stored is lost or changed.

(a) agent SIGKILLed while a 48 MiB upload streams (its store's temp file holds >= 1 MiB)
(b) agent and its worker SIGKILLed while measuring (the engine is built, warm-up is over)
(c) link cut: the host-side veth set down while measuring (silent, like a pulled cable: netns.py)
(d) one byte of an upload flipped in flight by a proxy between controller and agent
(e) the agent's cache directory a full 1 MiB tmpfs
(f) `edgefarm nightly` SIGKILLed after its first wave; `edgefarm resume RUN_ID` finishes the run
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import grpc
import pytest

from benchmarks.models import mlp_model
from edgefarm.agent.digest import sha256_file
from edgefarm.agent.server import MIN_PING_INTERVAL_MS
from edgefarm.controller.agents.client import (
    KEEPALIVE_S,
    AgentClient,
    AgentFaultError,
    AgentRejectedError,
    AgentUnreachableError,
    translate_rpc_error,
)
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm_run import FarmRun, FarmRunConfig, FarmRunResult
from edgefarm.controller.leases import sqlite_url
from edgefarm.controller.results.store import ResultStore
from tests.corrupting_proxy import CorruptingProxy
from tests.netns import REPO, Board, NamespacedAgent, NetnsLab, namespaces_unavailable

pytestmark = pytest.mark.slow
BOARDS = 4
VICTIM = 1        # the board each fault hits: the second job of the plan goes there
MATRIX = """models: [{models}]
recipes: [fp32]
targets: [{{pool: bench}}]
measure: {{warmup_seconds: 0.1, min_seconds: {min_seconds}, timeout_seconds: 120}}
"""
RUN_TIMEOUT_S = 120


class RecordingConsole(RunConsole):
    """Quiet, but keeps the notes: a retried job's reason is said there, not stored."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


class ControllerThread(threading.Thread):
    """FarmRun.start() in a thread, so the test can inject a fault while it runs."""

    def __init__(self, config: FarmRunConfig, db: Path) -> None:
        super().__init__(daemon=True)
        self.config, self.db, self.ui = config, db, RecordingConsole()
        self.result: FarmRunResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        store = ResultStore(self.db)  # SQLite connections belong to the thread that made them
        try:
            self.result = FarmRun(self.config, store, self.ui).start()
        except BaseException as exc:  # handed to the test thread by finish()
            self.error = exc
        finally:
            store.close()

    def finish(self, timeout_s: float = RUN_TIMEOUT_S) -> FarmRunResult:
        self.join(timeout_s)
        assert not self.is_alive(), f"the farm run did not finish within {timeout_s} s: {self.ui.notes}"
        if self.error is not None:
            raise self.error
        return self.result


class Farm:
    """One test's farm: agents on the lab's boards, its own results DB, leases and caches."""

    def __init__(self, lab: NetnsLab, root: Path) -> None:
        self.lab, self.root, self.db = lab, root, root / "results.sqlite"
        self.agents: list[NamespacedAgent] = []
        self.controllers: list[ControllerThread] = []

    @property
    def victim(self) -> Board:
        return self.lab.boards[VICTIM]

    def start_agents(self, cache_dirs: dict[int, Path] | None = None) -> None:
        self.agents = self.lab.start_agents(self.root, cache_dirs)

    def cache(self, board: Board) -> Path:
        return self.agents[board.index].cache_dir

    def models(self, big: Path | None = None) -> list[Path]:
        """Four small models (one per board); `big` replaces the victim's."""
        paths = [mlp_model(self.root / f"m{i}.onnx", width=64, depth=i + 1) for i in range(BOARDS)]
        return paths[:VICTIM] + [big] + paths[VICTIM + 1:] if big else paths

    def config(self, models: list[Path], addresses: dict[int, str] | None = None,
               min_seconds: float = 0.5) -> FarmRunConfig:
        (self.root / "matrix.yaml").write_text(MATRIX.format(models=", ".join(p.name for p in models),
                                                             min_seconds=min_seconds))
        write_devices(self.root / "devices.yaml", self.lab.boards, addresses or {})
        return FarmRunConfig(str(self.root / "matrix.yaml"), str(self.root / "devices.yaml"),
                             sqlite_url(self.root / "leases.sqlite"), str(self.root / "cache"))

    def run(self, config: FarmRunConfig) -> ControllerThread:
        controller = ControllerThread(config, self.db)
        self.controllers.append(controller)
        controller.start()
        return controller

    def close(self) -> None:
        for board in self.lab.boards:
            self.lab.restore_link(board)
        self.lab.stop_agents()  # first: a controller still running then fails fast instead of hanging
        for controller in self.controllers:
            controller.join(RUN_TIMEOUT_S)
        self.lab.unmount_all()


def write_devices(path: Path, boards: list[Board], addresses: dict[int, str]) -> Path:
    lines = ["devices:"]
    for board in boards:
        host, port = addresses.get(board.index, board.address).rsplit(":", 1)
        lines += [f"  - name: board-{board.index}", f"    host: {host}", f"    port: {port}",
                  "    tags: {role: bench}", "    backends: [onnxruntime]",
                  "    backend_options: {onnxruntime: {threads: 1}}"]
    path.write_text("\n".join(lines + ["pools:", "  bench: {role: bench}"]) + "\n")
    return path


@pytest.fixture(scope="module")
def lab() -> Iterator[NetnsLab]:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    lab = NetnsLab()
    try:
        for _ in range(BOARDS):
            lab.add_board()
        yield lab
    finally:
        lab.close()


@pytest.fixture
def farm(lab: NetnsLab, tmp_path: Path) -> Iterator[Farm]:
    farm = Farm(lab, tmp_path)
    try:
        yield farm
    finally:
        farm.close()


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 60.0, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def rows(db: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db, timeout=30)) as con:
        return con.execute(sql).fetchall()


def stored_results(db: Path) -> dict[str, bytes]:
    """Each stored result's raw samples, by job: a result rewritten or lost changes this."""
    try:
        return dict(rows(db, "SELECT job_id, samples_ns FROM results"))
    except sqlite3.OperationalError:  # the controller is still creating the schema
        return {}


def jobs_by_model(db: Path) -> dict[str, dict]:
    names = ("model", "device", "status", "failure_kind", "failure_message", "attempts")
    return {row[0]: dict(zip(names, row, strict=True))
            for row in rows(db, f"SELECT {', '.join(names)} FROM jobs")}


def upload_in_flight(cache: Path) -> bool:
    """A temp file of the store holding at least 1 MiB: the upload is streaming now."""
    return any(_size(p) >= 1 << 20 for p in (cache / "tmp").glob("*"))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # published (renamed) or aborted while we looked
        return 0


def engine_built(cache: Path) -> bool:
    """ONNX Runtime's optimized model is in the engine cache: loading is over, measuring is next."""
    return any(not p.name.startswith(".") for p in (cache / "engines").rglob("*.onnx"))


def artifacts_in(cache: Path) -> list[str]:
    return [p.name for p in cache.iterdir() if p.is_file() and len(p.name) == 64]


def assert_finished(result: FarmRunResult, controller: ControllerThread) -> None:
    failed = [(end.job.planned.key, end.device, end.kind, end.message) for end in result.outcome.failed]
    assert result.outcome.done == BOARDS and not failed, (failed, controller.ui.notes)


def assert_all_done_and_kept(farm: Farm, before: dict[str, bytes]) -> dict[str, dict]:
    jobs = jobs_by_model(farm.db)
    assert [j["status"] for j in jobs.values()] == ["done"] * BOARDS, jobs
    after = stored_results(farm.db)
    assert len(after) == BOARDS
    assert {job_id: after.get(job_id) for job_id in before} == before  # nothing stored was lost or changed
    return jobs


def assert_moved_off_the_victim(controller: ControllerThread, jobs: dict[str, dict], model: str, reason: str) -> None:
    moved = jobs[model]
    assert moved["device"] != f"board-{VICTIM}" and moved["attempts"] == 2, moved
    assert any(f"on board-{VICTIM}: {reason}" in note for note in controller.ui.notes), controller.ui.notes


def test_the_agent_allows_the_keepalive_pings_the_controller_sends() -> None:
    # Otherwise the agent answers GOAWAY "too_many_pings" to a controller waiting on a long, silent build.
    assert MIN_PING_INTERVAL_MS <= KEEPALIVE_S * 1000


class _Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(("code", "kind"), [
    (grpc.StatusCode.INTERNAL, AgentUnreachableError),          # an upload cut off by a dying agent (grpc.aio)
    (grpc.StatusCode.DATA_LOSS, AgentFaultError),               # bytes damaged on the way
    (grpc.StatusCode.RESOURCE_EXHAUSTED, AgentFaultError),      # the board's disk is full
    (grpc.StatusCode.INVALID_ARGUMENT, AgentRejectedError),     # the request itself was wrong
])
def test_refusals_that_are_no_fault_of_the_job_are_retried_elsewhere(code: grpc.StatusCode, kind: type) -> None:
    error = translate_rpc_error("board-x", "127.0.0.1:1", _Status(code, "why"))
    assert type(error) is kind and "why" in str(error)


def test_agent_killed_mid_upload(farm: Farm) -> None:
    farm.start_agents()
    big = mlp_model(farm.root / "big.onnx", width=2048, depth=3)  # 48 MiB: the upload takes a while
    controller = farm.run(farm.config(farm.models(big)))
    wait_for(lambda: upload_in_flight(farm.cache(farm.victim)), "the big upload to stream to the victim")
    before = stored_results(farm.db)
    farm.agents[VICTIM].kill()
    result = controller.finish()
    assert_finished(result, controller)
    jobs = assert_all_done_and_kept(farm, before)
    assert_moved_off_the_victim(controller, jobs, "big", "transport")
    # Back on power, the board holds nothing of the half-sent artifact, visible or not.
    farm.lab.start_agents(farm.root, {VICTIM: farm.cache(farm.victim)}, only=[farm.victim])
    client = AgentClient("victim", farm.victim.address)
    try:
        assert client.missing([sha256_file(big)]) == [sha256_file(big)]
    finally:
        client.close()
    assert artifacts_in(farm.cache(farm.victim)) == [] and list((farm.cache(farm.victim) / "tmp").iterdir()) == []


def test_agent_killed_mid_run(farm: Farm) -> None:
    farm.start_agents()
    controller = farm.run(farm.config(farm.models(), min_seconds=1.0))
    wait_for(lambda: engine_built(farm.cache(farm.victim)), "the victim to load its model")
    time.sleep(0.3)  # first inference and warm-up (0.1 s); measuring lasts 1 s
    before = stored_results(farm.db)
    assert farm.agents[VICTIM].workers(), "the victim's worker should be measuring now"
    farm.agents[VICTIM].kill()
    result = controller.finish()
    assert_finished(result, controller)
    jobs = assert_all_done_and_kept(farm, before)
    assert_moved_off_the_victim(controller, jobs, f"m{VICTIM}", "transport")


def test_link_cut_mid_run_moves_the_job_to_another_board(farm: Farm) -> None:
    farm.start_agents()
    controller = farm.run(farm.config(farm.models(), min_seconds=3.0))
    wait_for(lambda: engine_built(farm.cache(farm.victim)), "the victim to load its model")
    time.sleep(0.3)
    before = stored_results(farm.db)
    cut_at = time.monotonic()
    farm.lab.cut_link(farm.victim)
    result = controller.finish()
    # keepalive: a ping every KEEPALIVE_S, unanswered for 5 s, then the retry elsewhere (~6 s)
    assert time.monotonic() - cut_at < KEEPALIVE_S + 5 + 30
    assert_finished(result, controller)
    jobs = assert_all_done_and_kept(farm, before)
    assert_moved_off_the_victim(controller, jobs, f"m{VICTIM}", "transport")


def test_corrupted_chunk_is_rejected_and_the_job_retried(farm: Farm) -> None:
    farm.start_agents()
    models = farm.models(mlp_model(farm.root / "wide.onnx", width=1024, depth=2))  # 8 MiB
    host, port = farm.victim.address.rsplit(":", 1)
    with CorruptingProxy((host, int(port))) as proxy:
        controller = farm.run(farm.config(models, addresses={VICTIM: proxy.address}))
        result = controller.finish()
        assert proxy.flipped.is_set()
    assert_finished(result, controller)
    jobs = assert_all_done_and_kept(farm, {})
    assert_moved_off_the_victim(controller, jobs, "wide", "infrastructure")
    assert any("upload rejected" in note for note in controller.ui.notes), controller.ui.notes
    assert artifacts_in(farm.cache(farm.victim)) == [] and list((farm.cache(farm.victim) / "tmp").iterdir()) == []


def test_full_cache_is_a_clear_error_and_leaves_nothing_half_written(farm: Farm, lab: NetnsLab) -> None:
    tiny = lab.mount_tmpfs(farm.root / "tiny-cache", size="1m")
    farm.start_agents({VICTIM: tiny})
    models = farm.models(mlp_model(farm.root / "wide.onnx", width=1024, depth=2))  # 8 MiB > 1 MiB
    controller = farm.run(farm.config(models))
    result = controller.finish()
    assert_finished(result, controller)
    jobs = assert_all_done_and_kept(farm, {})
    assert_moved_off_the_victim(controller, jobs, "wide", "infrastructure")
    assert any("No space left on device" in note for note in controller.ui.notes), controller.ui.notes
    assert artifacts_in(tiny) == [] and list((tiny / "tmp").iterdir()) == []
    fill(tiny / "filler")  # now not even a small artifact fits: it must be refused, not kept empty
    small = farm.root / "small.bin"
    small.write_bytes(os.urandom(1000))  # under the writer's 8 KiB buffer: the disk refuses it only at close
    client = AgentClient("victim", farm.victim.address)
    try:
        with pytest.raises(AgentRejectedError, match="No space left on device"):
            client.upload(small, sha256_file(small))
        assert client.missing([sha256_file(small)]) == [sha256_file(small)]
    finally:
        client.close()
    assert artifacts_in(tiny) == [] and list((tiny / "tmp").iterdir()) == []


def fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as f:
        try:
            for _ in range(1 << 12):  # bounded: 16 MiB at most, far more than the tmpfs holds
                f.write(b"\0" * 4096)
        except OSError:
            return
    pytest.fail(f"{path} never filled its file system")


def edgefarm(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgefarm.controller", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, timeout_s: float = RUN_TIMEOUT_S) -> tuple[int, str]:
    """Its exit code and output; killed if it runs past the timeout."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out + err


def live_leases(farm: Farm) -> set[str]:
    return {device for (device,) in rows(farm.root / "leases.sqlite", "SELECT device FROM device_leases "
                                         f"WHERE token IS NOT NULL AND expires_at > {time.time()}")}


def test_controller_killed_then_resume_finishes_without_redoing(farm: Farm) -> None:
    farm.start_agents()
    models = farm.models() + [mlp_model(farm.root / f"m{i}.onnx", width=64, depth=i + 1) for i in (4, 5)]
    config = farm.config(models, min_seconds=1.0)  # six jobs, four boards: a second wave of two
    storage = ["--db", str(farm.db), "--cache-dir", config.cache_dir]
    nightly = edgefarm("nightly", "--matrix", config.matrix, "--devices", config.devices, "--leases", config.leases,
                       "--out", str(farm.root / "out"), *storage)
    try:
        wait_for(lambda: len(stored_results(farm.db)) >= BOARDS or nightly.poll() is not None,
                 "the first wave of results", timeout_s=RUN_TIMEOUT_S, poll_s=0.02)
        os.kill(nightly.pid, signal.SIGKILL)  # mid second wave
    finally:
        finished(nightly, timeout_s=0)  # SIGKILLed already, or killed here when the wait failed
    before, held = stored_results(farm.db), live_leases(farm)
    assert BOARDS <= len(before) < len(models), "the controller died too late to leave work to resume"
    (run_id,), = rows(farm.db, "SELECT id FROM runs")
    attempts = {job_id: n for job_id, n in rows(farm.db, "SELECT id, attempts FROM jobs WHERE status = 'done'")}
    (listed,) = json.loads(subprocess.run([sys.executable, "-m", "edgefarm.controller", "runs", "--json",
                                           "--db", str(farm.db)], capture_output=True, text=True, check=True).stdout)
    assert listed["status"] == "abandoned"   # its controller is gone; before: "running" forever
    code, output = finished(edgefarm("resume", run_id, *storage, "--out", str(farm.root / "resumed")))
    assert code == 0, output   # the resumed night measured everything it planned
    assert (farm.root / "resumed" / "junit.xml").exists()
    after = stored_results(farm.db)
    assert len(after) == len(models) == len(rows(farm.db, "SELECT id FROM jobs"))
    assert {job_id: after[job_id] for job_id in before} == before  # byte-identical, not measured again
    assert dict(rows(farm.db, f"SELECT id, attempts FROM jobs WHERE id IN ({_marks(attempts)})")) == attempts
    # The dead controller's leases carry the run's id: resume takes them over instead of sitting them out.
    taken = output.partition("taking over the abandoned run's leases on ")[2].splitlines()[:1]
    assert held and taken and all(board in taken[0] for board in held), output


def _marks(ids: object) -> str:
    return ", ".join(f"'{job_id}'" for job_id in ids)
