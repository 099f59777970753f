"""The farm runner's own rules, on plain data: what a lease-database outage does to a night."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from controller.console import RunConsole
from controller.farm import LEASE_DB_ATTEMPTS, FarmJob, FarmRunner, RetryPolicy
from controller.inventory import Device
from controller.leases import LeaseError
from controller.leases.sqlite import SqliteLeaseManager
from controller.pipeline import MeasureSettings
from controller.scheduler import PlannedJob
from controller.store import JobRecord, ResultStore

BOARDS = ("board-a", "board-b")


class OutageLeases(SqliteLeaseManager):
    """A real SQLite lease database whose lease-taking step fails, as a lost PostgreSQL server would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.attempts = 0

    def _take_first_free(self, *args: object) -> None:
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
