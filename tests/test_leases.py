"""controller/leases: the contract every lease database keeps, run here on a real SQLite file.

LeaseContract holds the behaviour both backends must share; TestSqliteLeases runs it on SQLite
and tests/test_leases_postgres.py runs it on a real PostgreSQL server. Races use separate
processes, because the guarantee is about two controllers, not two threads.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from edgefarm.agent.sensors.base import WaitClock
from edgefarm.controller.cli import main
from edgefarm.controller.cli.common import leases_url
from edgefarm.controller.leases import (
    DeviceQuarantinedError,
    DeviceState,
    Heartbeat,
    Lease,
    LeaseError,
    LeaseKeeper,
    LeaseLost,
    LeaseManager,
    Renewal,
    open_lease_manager,
    sqlite_url,
)

SHORT_TTL_S = 0.4
PAST_SHORT_TTL_S = 0.7
HEARTBEAT_TTL_S = 30.0   # beats every 10 s of fake time: three must go missing before it runs out
RACE_ATTEMPTS = 50
RACE_HOLD_S = 0.004
RACE_WAVE = ("wave-a", "wave-b", "wave-c")
WAIT_LIMIT_S = 10.0   # every wait in these tests gives up after this


class FakeTime:
    """Fake monotonic time for a Heartbeat: each wait moves it by exactly its timeout, so beats land
    on exact ticks. A wait that would pass `end_s` parks there until stop() (`parked` says so)."""

    def __init__(self, end_s: float = math.inf) -> None:
        self.now_s = 0.0
        self.end_s = end_s
        self.parked = threading.Event()
        self.clock = WaitClock(now=lambda: self.now_s, wait=self._wait)

    def _wait(self, event: threading.Event, timeout_s: float) -> bool:
        if event.is_set():
            return True
        if self.now_s + timeout_s > self.end_s:
            self.parked.set()
            return event.wait()     # stop() sets it
        self.now_s += timeout_s
        return False


def record_renewals(monkeypatch: pytest.MonkeyPatch, manager: LeaseManager, fake: FakeTime) -> list[float]:
    """The fake times at which `manager.renew` is called."""
    times: list[float] = []
    renew = manager.renew

    def recording(lease: Lease) -> Lease:
        times.append(fake.now_s)
        return renew(lease)

    monkeypatch.setattr(manager, "renew", recording)
    return times


class LeaseContract:
    """What every LeaseManager must do; a subclass provides the `lease_url` fixture."""

    @pytest.fixture
    def leases(self, lease_url: str) -> Iterator[LeaseManager]:
        with open_lease_manager(lease_url) as manager:
            yield manager

    @pytest.fixture
    def other_controller(self, lease_url: str) -> Iterator[LeaseManager]:
        """A second connection, as a second controller would have."""
        with open_lease_manager(lease_url) as manager:
            yield manager

    def test_acquire_renew_release(self, leases: LeaseManager, other_controller: LeaseManager) -> None:
        lease = leases.acquire("orin-01", "nightly@ci-runner-3", "nightly int8 sweep", ttl_s=30)
        assert lease is not None
        assert (lease.device, lease.owner, lease.purpose, lease.ttl_s) == (
            "orin-01", "nightly@ci-runner-3", "nightly int8 sweep", 30)
        assert timedelta(seconds=29) < lease.expires_at - lease.acquired_at <= timedelta(seconds=30)
        assert other_controller.acquire("orin-01", "alice@laptop", "debugging", ttl_s=30) is None

        time.sleep(0.05)
        renewed = leases.renew(lease)
        assert renewed.token == lease.token and renewed.expires_at > lease.expires_at
        state = other_controller.states(["orin-01"])[0]
        assert state.status == "leased" and state.lease == renewed
        assert 29 < state.expires_in_s <= 30

        leases.release(renewed)
        assert other_controller.states(["orin-01"])[0].status == "idle"
        assert other_controller.acquire("orin-01", "alice@laptop", "debugging", ttl_s=30) is not None

    def test_expired_lease_is_not_counted_without_any_cleanup(self, leases: LeaseManager,
                                                              other_controller: LeaseManager) -> None:
        dead = leases.acquire("rpi5-01", "nightly@ci-runner-3", "controller crashes", ttl_s=SHORT_TTL_S)
        assert dead is not None
        leases.close()   # the controller dies: nobody renews, nobody cleans up
        time.sleep(PAST_SHORT_TTL_S)
        assert other_controller.states(["rpi5-01"])[0].status == "idle"
        taken = other_controller.acquire("rpi5-01", "alice@laptop", "debugging", ttl_s=30)
        assert taken is not None and taken.owner == "alice@laptop"

    def test_renewing_a_lease_someone_else_took_raises_lease_lost(self, leases: LeaseManager,
                                                                   other_controller: LeaseManager) -> None:
        stale = leases.acquire("x86-01", "nightly@ci-runner-3", "stalled", ttl_s=SHORT_TTL_S)
        assert stale is not None
        time.sleep(PAST_SHORT_TTL_S)
        taken = other_controller.acquire("x86-01", "alice@laptop", "debugging", ttl_s=30)
        assert taken is not None
        with pytest.raises(LeaseLost, match="now held by alice@laptop"):
            leases.renew(stale)
        leases.release(stale)   # releasing a lost lease must not free the new holder's
        assert other_controller.states(["x86-01"])[0].lease == taken

    def test_renewing_an_expired_lease_nobody_took_raises_lease_lost(self, leases: LeaseManager) -> None:
        stale = leases.acquire("x86-01", "nightly@ci-runner-3", "stalled", ttl_s=SHORT_TTL_S)
        assert stale is not None
        time.sleep(PAST_SHORT_TTL_S)
        with pytest.raises(LeaseLost, match="free again"):
            leases.renew(stale)

    def test_acquire_any_takes_the_first_free_board_of_the_pool(self, leases: LeaseManager) -> None:
        pool = ["pi-a", "pi-b", "pi-c"]
        leases.quarantine("pi-b", "SD card read-only")
        first = leases.acquire_any(pool, "nightly@ci-runner-3", "job 1", ttl_s=30)
        second = leases.acquire_any(pool, "nightly@ci-runner-4", "job 2", ttl_s=30)
        assert (first.device, second.device) == ("pi-a", "pi-c")
        assert leases.acquire_any(pool, "alice@laptop", "job 3", ttl_s=30) is None
        leases.release(first)
        assert leases.acquire_any(pool, "alice@laptop", "job 3", ttl_s=30).device == "pi-a"

    def test_a_quarantined_board_is_refused_with_a_clear_error(self, leases: LeaseManager) -> None:
        leases.quarantine("coral-01", "Edge TPU not detected on USB")
        expected = (r"device 'coral-01' is quarantined since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: "
                    r"Edge TPU not detected on USB; run 'edgefarm devices unquarantine coral-01' after checking it")
        with pytest.raises(DeviceQuarantinedError, match=f"^{expected}$"):
            leases.acquire("coral-01", "alice@laptop", "debugging", ttl_s=30)
        with pytest.raises(DeviceQuarantinedError, match="coral-01"):
            leases.acquire_any(["coral-01"], "alice@laptop", "debugging", ttl_s=30)
        state = leases.states(["coral-01"])[0]
        assert (state.status, state.quarantine_reason) == ("quarantined", "Edge TPU not detected on USB")

        leases.unquarantine("coral-01")
        assert leases.acquire("coral-01", "alice@laptop", "debugging", ttl_s=30) is not None

    def test_quarantining_again_updates_the_reason_and_keeps_since(self, leases: LeaseManager) -> None:
        leases.quarantine("coral-01", "first")
        since = leases.states(["coral-01"])[0].quarantined_since
        time.sleep(0.05)
        leases.quarantine("coral-01", "second")
        state = leases.states(["coral-01"])[0]
        assert (state.quarantined_since, state.quarantine_reason) == (since, "second")

    def test_a_resume_takes_over_the_live_leases_of_its_own_dead_run_only(self, leases: LeaseManager,
                                                                          other_controller: LeaseManager) -> None:
        dead = leases.acquire("orin-01", "ci@runner-3/20261202-010000-abc123", "edgefarm farm run", ttl_s=60)
        assert dead is not None
        for reclaim in ("", "/20261202-010000-other1", "/%", "_"):   # LIKE's wildcards are taken literally
            assert other_controller.acquire("orin-01", "ci@runner-4/x", "resume", 60, reclaim) is None
        taken = other_controller.acquire("orin-01", "ci@runner-4/20261202-010000-abc123", "edgefarm farm run", 60,
                                         reclaim="/20261202-010000-abc123")
        assert taken is not None and leases.states(["orin-01"])[0].lease.token == taken.token
        with pytest.raises(LeaseLost):
            leases.renew(dead)

    def test_health_checks_are_stored_and_the_newest_is_shown(self, leases: LeaseManager) -> None:
        assert leases.last_checks(["coral-01"]) == {}
        leases.record_check("coral-01", False, "no agent answered", "nightly@ci (quarantine)", next_in_s=60)
        time.sleep(0.05)
        leases.record_check("coral-01", True, "ok", "alice@laptop (devices status --check)")
        leases.record_check("x86-01", False, "canary top-1 0.1", "nightly@ci (quarantine)", next_in_s=120)
        checks = leases.last_checks(["coral-01", "x86-01", "orin-01"])
        assert sorted(checks) == ["coral-01", "x86-01"]
        assert (checks["coral-01"].passed, checks["coral-01"].detail, checks["coral-01"].next_due) == (True, "ok", None)
        failed = checks["x86-01"]
        assert not failed.passed and failed.checked_by == "nightly@ci (quarantine)"
        assert 119 <= (failed.next_due - failed.checked_at).total_seconds() <= 121

    def test_states_keep_the_order_asked_and_unknown_boards_are_idle(self, leases: LeaseManager) -> None:
        leases.acquire("b", "alice@laptop", "debugging", ttl_s=30)
        states = leases.states(["never-seen", "b", "a"])
        assert [(s.device, s.status) for s in states] == [("never-seen", "idle"), ("b", "leased"), ("a", "idle")]
        assert all(s.checked_at.tzinfo is not None for s in states)

    def test_heartbeat_renews_every_third_of_the_ttl_and_stops_after_release(
            self, leases: LeaseManager, other_controller: LeaseManager, monkeypatch: pytest.MonkeyPatch) -> None:
        lease = leases.acquire("orin-01", "nightly@ci-runner-3", "long job", ttl_s=HEARTBEAT_TTL_S)
        fake = FakeTime(end_s=3 * HEARTBEAT_TTL_S)
        renewals = record_renewals(monkeypatch, leases, fake)
        with Heartbeat(leases, lease, clock=fake.clock) as heartbeat:
            assert fake.parked.wait(WAIT_LIMIT_S)
            assert renewals == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
            assert other_controller.acquire("orin-01", "alice@laptop", "debugging", ttl_s=30) is None
            assert heartbeat.lease.expires_at > lease.expires_at
            heartbeat.check()
        assert not heartbeat.is_alive()
        assert other_controller.states(["orin-01"])[0].status == "idle"
        assert other_controller.acquire("orin-01", "alice@laptop", "debugging", ttl_s=30) is not None
        assert heartbeat.lost is None

    def test_heartbeat_flags_lease_lost_when_someone_else_took_the_board(
            self, leases: LeaseManager, other_controller: LeaseManager) -> None:
        lease = leases.acquire("orin-01", "nightly@ci-runner-3", "stalled job", ttl_s=HEARTBEAT_TTL_S)
        # The controller froze past the deadline (GC pause, suspended VM) and the board went to
        # someone else before its next beat. Releasing stands in for the database's expiry, which
        # the tests above check without a heartbeat.
        leases.release(lease)
        assert other_controller.acquire("orin-01", "alice@laptop", "debugging", ttl_s=30) is not None
        fake, lost = FakeTime(), threading.Event()
        heartbeat = Heartbeat(leases, lease, on_lost=lambda _: lost.set(), clock=fake.clock).start()
        assert lost.wait(WAIT_LIMIT_S)
        assert fake.now_s == 10.0   # the first beat found it lost, and the thread stopped beating
        heartbeat.stop()
        assert not heartbeat.is_alive() and fake.now_s == 10.0
        with pytest.raises(LeaseLost, match="now held by alice@laptop"):
            heartbeat.check()
        heartbeat.release()
        assert other_controller.states(["orin-01"])[0].lease.owner == "alice@laptop"

    def test_acquire_many_takes_every_free_board_of_a_wave_at_once(self, leases: LeaseManager,
                                                                    other_controller: LeaseManager) -> None:
        wave = ["pi-a", "pi-b", "pi-c", "pi-d", "pi-a"]   # a name twice is one board
        leases.quarantine("pi-b", "SD card read-only")
        held = other_controller.acquire("pi-c", "alice@laptop", "debugging", ttl_s=30)
        taken = leases.acquire_many(wave, "nightly@ci-runner-3", "edgefarm farm run", ttl_s=30)
        assert sorted(taken) == ["pi-a", "pi-d"]
        assert all((lease.device, lease.owner, lease.ttl_s) == (device, "nightly@ci-runner-3", 30)
                   for device, lease in taken.items())
        assert len({lease.token for lease in taken.values()} | {held.token}) == 3
        states = {state.device: state for state in other_controller.states(["pi-a", "pi-b", "pi-c", "pi-d"])}
        assert [states[d].status for d in ("pi-a", "pi-b", "pi-c", "pi-d")] == ["leased", "quarantined", "leased",
                                                                                 "leased"]
        assert states["pi-a"].lease == taken["pi-a"] and states["pi-c"].lease == held
        assert other_controller.acquire_many(wave, "alice@laptop", "debugging", ttl_s=30) == {}
        with pytest.raises(LeaseError):
            leases.acquire_many([], "nightly@ci-runner-3", "p", ttl_s=30)

    def test_acquire_many_takes_over_a_dead_runs_leases_only_with_reclaim(self, leases: LeaseManager,
                                                                          other_controller: LeaseManager) -> None:
        dead = leases.acquire_many(["orin-01", "orin-02"], "ci@runner-3/RUN-1", "edgefarm farm run", ttl_s=60)
        assert other_controller.acquire_many(["orin-01", "orin-02"], "ci@runner-4/RUN-1", "resume", 60) == {}
        taken = other_controller.acquire_many(["orin-01", "orin-02"], "ci@runner-4/RUN-1", "edgefarm farm run", 60,
                                              reclaim="/RUN-1")
        assert sorted(taken) == ["orin-01", "orin-02"]
        assert leases.renew_many(list(dead.values())).renewed == ()

    def test_renew_many_renews_the_held_leases_and_says_why_each_other_was_lost(
            self, leases: LeaseManager, other_controller: LeaseManager) -> None:
        taken = leases.acquire_many(["x86-01", "x86-02", "x86-03"], "nightly@ci-runner-3", "night", ttl_s=30)
        leases.release(taken["x86-02"])   # stands in for its expiry, then someone else takes the board
        alice = other_controller.acquire("x86-02", "alice@laptop", "debugging", ttl_s=30)
        leases.release(taken["x86-03"])
        time.sleep(0.05)
        renewal = leases.renew_many(list(taken.values()))
        (renewed,) = renewal.renewed
        assert renewed.device == "x86-01" and renewed.token == taken["x86-01"].token
        assert renewed.expires_at > taken["x86-01"].expires_at
        assert other_controller.states(["x86-01"])[0].lease == renewed
        assert [lost.device for lost in renewal.lost] == ["x86-02", "x86-03"]
        assert all(isinstance(lost, LeaseLost) for lost in renewal.lost)
        assert "now held by alice@laptop" in str(renewal.lost[0]) and "free again" in str(renewal.lost[1])
        assert other_controller.states(["x86-02"])[0].lease == alice
        assert leases.renew_many([]) == Renewal((), ())

    def test_release_many_frees_only_the_leases_still_held(self, leases: LeaseManager,
                                                           other_controller: LeaseManager) -> None:
        taken = leases.acquire_many(["pi-a", "pi-b", "pi-c"], "nightly@ci-runner-3", "night", ttl_s=SHORT_TTL_S)
        time.sleep(PAST_SHORT_TTL_S)
        alice = other_controller.acquire("pi-b", "alice@laptop", "debugging", ttl_s=30)
        leases.release_many(list(taken.values()))   # pi-b's lease ran out and is alice's now: left alone
        states = other_controller.states(["pi-a", "pi-b", "pi-c"])
        assert [s.status for s in states] == ["idle", "leased", "idle"] and states[1].lease == alice
        leases.release_many([])

    def test_lease_keeper_renews_every_lease_in_one_call_per_beat(
            self, leases: LeaseManager, other_controller: LeaseManager, monkeypatch: pytest.MonkeyPatch) -> None:
        taken = leases.acquire_many(["orin-01", "orin-02"], "nightly@ci-runner-3", "night", ttl_s=HEARTBEAT_TTL_S)
        fake, calls = FakeTime(end_s=3 * HEARTBEAT_TTL_S), []
        renew_many = leases.renew_many
        monkeypatch.setattr(leases, "renew_many", lambda held: calls.append((fake.now_s, len(held))) or
                            renew_many(held))
        keeper = LeaseKeeper(leases, HEARTBEAT_TTL_S / 3, clock=fake.clock)
        for lease in taken.values():
            keeper.add(lease)
        keeper.start()
        assert fake.parked.wait(WAIT_LIMIT_S)
        assert calls == [(10.0 * n, 2) for n in range(1, 10)]   # nine beats, each one call for both leases
        assert other_controller.acquire_many(list(taken), "alice@laptop", "debugging", ttl_s=30) == {}
        assert keeper.lease("orin-01").expires_at > taken["orin-01"].expires_at
        keeper.check("orin-01")
        keeper.stop()
        leases.release_many([keeper.remove("orin-01"), keeper.remove("orin-02")])
        assert keeper.leases() == [] and [s.status for s in other_controller.states(list(taken))] == ["idle", "idle"]

    def test_lease_keeper_drops_a_lost_lease_and_keeps_the_others(self, leases: LeaseManager,
                                                                  other_controller: LeaseManager) -> None:
        taken = leases.acquire_many(["orin-01", "orin-02"], "nightly@ci-runner-3", "night", ttl_s=HEARTBEAT_TTL_S)
        leases.release(taken["orin-02"])   # the controller froze past the deadline; alice took the board
        assert other_controller.acquire("orin-02", "alice@laptop", "debugging", ttl_s=30) is not None
        fake, lost = FakeTime(end_s=2 * HEARTBEAT_TTL_S), []
        keeper = LeaseKeeper(leases, HEARTBEAT_TTL_S / 3, on_lost=lost.append, clock=fake.clock)
        for lease in taken.values():
            keeper.add(lease)
        keeper.start()
        assert fake.parked.wait(WAIT_LIMIT_S)
        keeper.stop()
        assert [error.device for error in lost] == ["orin-02"]
        assert keeper.lease("orin-02") is None and keeper.lease("orin-01") is not None
        with pytest.raises(LeaseLost, match="now held by alice@laptop"):
            keeper.check("orin-02")
        assert other_controller.states(["orin-01"])[0].lease == keeper.lease("orin-01")

    @pytest.mark.slow
    def test_two_controllers_taking_waves_never_hold_a_board_at_once(self, lease_url: str, tmp_path: Path) -> None:
        holdings = race_for_one_board(lease_url, tmp_path, workers=2, wave=RACE_WAVE)
        for board in RACE_WAVE:
            spans = [span for owner in holdings for device, *span in holdings[owner] if device == board]
            assert spans, f"nobody ever got {board}"
            assert find_overlaps([tuple(span) for span in spans]) == []

    @pytest.mark.slow
    def test_two_controller_processes_racing_never_hold_a_board_at_once(self, lease_url: str,
                                                                         tmp_path: Path) -> None:
        holdings = race_for_one_board(lease_url, tmp_path, workers=2)
        assert all(holdings.values()), f"a worker never got the board: {holdings}"
        assert find_overlaps([span for spans in holdings.values() for span in spans]) == []

    def test_bad_requests_are_refused(self, leases: LeaseManager) -> None:
        for devices, owner, ttl_s in ([[], "a", 1], [["x"], "", 1], [["x"], "a", 0], ["x", "a", 1]):
            with pytest.raises(LeaseError):
                leases.acquire_any(devices, owner, "p", ttl_s)


class TestSqliteLeases(LeaseContract):
    @pytest.fixture
    def lease_url(self, tmp_path: Path) -> str:
        return sqlite_url(tmp_path / "leases.sqlite")


# --- racing from separate processes ------------------------------------------------------------

def race_for_one_board(url: str, folder: Path, workers: int, wave: tuple[str, ...] = ()) -> dict[str, list]:
    """Each worker process tries RACE_ATTEMPTS times to take, hold and release one board (or, given
    a wave, whichever of its boards acquire_many gets).

    Returns each worker's holdings as (start, end) in monotonic ns (one clock for all processes
    on Linux), measured inside the time the worker believed it held the lease; with a wave, as
    (board, start, end).
    """
    context = multiprocessing.get_context("spawn")   # fork would copy pytest's threads and connections
    start_together = context.Barrier(workers)
    processes = {f"worker-{n}@race": context.Process(
        target=race_worker if not wave else wave_race_worker,
        args=(url, f"worker-{n}@race", start_together, folder / f"worker-{n}.txt", *((wave,) if wave else ())))
        for n in range(workers)}
    for process in processes.values():
        process.start()
    for process in processes.values():
        process.join(60)
    assert all(process.exitcode == 0 for process in processes.values()), "a race worker failed"
    read = _read_spans if not wave else _read_board_spans
    return {owner: read(folder / f"{owner.split('@')[0]}.txt") for owner in processes}


def race_worker(url: str, owner: str, start_together: Barrier, out: Path) -> None:
    with open_lease_manager(url) as leases:
        start_together.wait(WAIT_LIMIT_S * 3)
        spans = []
        for _ in range(RACE_ATTEMPTS):
            lease = leases.acquire("contested-board", owner, "race", ttl_s=30)
            if lease is not None:
                start = time.monotonic_ns()
                time.sleep(RACE_HOLD_S)
                spans.append((start, time.monotonic_ns()))
                leases.release(lease)
            time.sleep(RACE_HOLD_S)   # give the other worker its chance
    out.write_text("".join(f"{start} {end}\n" for start, end in spans))


def wave_race_worker(url: str, owner: str, start_together: Barrier, out: Path, wave: tuple[str, ...]) -> None:
    with open_lease_manager(url) as leases:
        start_together.wait(WAIT_LIMIT_S * 3)
        spans = []
        for _ in range(RACE_ATTEMPTS):
            taken = leases.acquire_many(wave, owner, "race", ttl_s=30)
            start = time.monotonic_ns()
            time.sleep(RACE_HOLD_S)
            spans += [(device, start, time.monotonic_ns()) for device in taken]
            leases.release_many(list(taken.values()))
            time.sleep(RACE_HOLD_S)
    out.write_text("".join(f"{device} {start} {end}\n" for device, start, end in spans))


def _read_board_spans(path: Path) -> list[tuple[str, int, int]]:
    return [(device, int(start), int(end)) for device, start, end in
            (line.split() for line in path.read_text().splitlines())]


def _read_spans(path: Path) -> list[tuple[int, int]]:
    return [(int(start), int(end)) for start, end in (line.split() for line in path.read_text().splitlines())]


def find_overlaps(spans: list[tuple[int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Pairs of holdings that shared an instant."""
    ordered = sorted(spans)
    return [(before, after) for before, after in zip(ordered, ordered[1:], strict=False) if after[0] <= before[1]]


def test_find_overlaps_catches_a_shared_instant() -> None:
    assert find_overlaps([(0, 10), (11, 20), (30, 40)]) == []
    assert find_overlaps([(0, 10), (30, 40), (10, 20)]) == [((0, 10), (10, 20))]


# --- plain data, URLs, the heartbeat's retry, the CLI ------------------------------------------

NOON = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_device_state_status_and_expiry_come_from_the_database_clock() -> None:
    lease = Lease("a", "alice@laptop", "debugging", "t", NOON, NOON + timedelta(seconds=90), 90)
    assert DeviceState("a", NOON).status == "idle"
    assert DeviceState("a", NOON + timedelta(seconds=30), lease).expires_in_s == 60
    assert DeviceState("a", NOON, lease, NOON, "fan").status == "quarantined"


def test_unknown_url_lists_the_valid_forms() -> None:
    with pytest.raises(LeaseError, match=re.escape("valid forms: sqlite:///path/to/leases.sqlite, postgresql://")):
        open_lease_manager("mysql://farm/leases")
    with pytest.raises(LeaseError, match="names no file"):
        open_lease_manager("sqlite://")


def test_leases_url_default_sits_beside_the_results_db(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEFARM_LEASES", raising=False)
    monkeypatch.setenv("EDGEFARM_DB", str(tmp_path / "results.sqlite"))
    assert leases_url(argparse.Namespace(leases=None)) == f"sqlite://{tmp_path / 'leases.sqlite'}"
    monkeypatch.setenv("EDGEFARM_LEASES", "postgresql://farm-db/edgefarm")
    assert leases_url(argparse.Namespace(leases=None)) == "postgresql://farm-db/edgefarm"
    assert leases_url(argparse.Namespace(leases="sqlite:///x")) == "sqlite:///x"


class _DatabaseDown(LeaseManager):
    """Every renewal fails as an unreachable database would."""

    def _take_first_free(self, *args: object) -> Lease | None:
        raise AssertionError("not used")

    _take_all_free = _take_first_free

    def renew(self, lease: Lease) -> Lease:
        raise LeaseError("lease database postgresql://farm-db/edgefarm: connection refused")

    def _renew_all(self, leases: list[Lease]) -> dict:
        raise LeaseError("lease database postgresql://farm-db/edgefarm: connection refused")

    release = quarantine = unquarantine = states = close = record_check = last_checks = _release_all = \
        lambda self, *args: None


def test_heartbeat_counts_a_lease_lost_once_the_database_stayed_down_for_its_ttl() -> None:
    lease = Lease("a", "nightly@ci-runner-3", "job", "t", NOON, NOON + timedelta(seconds=30), 30)
    fake, lost = FakeTime(), threading.Event()
    heartbeat = Heartbeat(_DatabaseDown(), lease, on_lost=lambda _: lost.set(), clock=fake.clock).start()
    assert lost.wait(WAIT_LIMIT_S)
    assert fake.now_s == 30.0   # failed beats at 10 and 20 s were retried; the one at 30 s gave up
    with pytest.raises(LeaseLost, match="not renewed for 30 s.*connection refused"):
        heartbeat.check()
    heartbeat.stop()


def test_lease_keeper_counts_a_lease_lost_once_the_database_stayed_down_for_its_ttl() -> None:
    early = Lease("a", "nightly@ci-runner-3", "job", "t1", NOON, NOON + timedelta(seconds=30), 30)
    fake, lost = FakeTime(end_s=50.0), []
    keeper = LeaseKeeper(_DatabaseDown(), 10.0, on_lost=lost.append, clock=fake.clock)
    keeper.add(early)
    keeper.start()
    assert fake.parked.wait(WAIT_LIMIT_S)
    keeper.stop()
    # failed beats at 10 and 20 s were retried; at 30 s the lease had gone its ttl without renewal
    assert [error.device for error in lost] == ["a"] and keeper.leases() == []
    with pytest.raises(LeaseLost, match="not renewed for 30 s.*connection refused"):
        keeper.check("a")
    keeper.add(early)   # taken again: counted afresh
    keeper.check("a")


class _DatabaseBack(_DatabaseDown):
    """Down for the first `failures` renewals, then renews again."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def renew(self, lease: Lease) -> Lease:
        if self.failures:
            self.failures -= 1
            return super().renew(lease)
        return lease


def test_heartbeat_keeps_the_lease_when_the_database_is_back_within_its_ttl() -> None:
    lease = Lease("a", "nightly@ci-runner-3", "job", "t", NOON, NOON + timedelta(seconds=30), 30)
    fake = FakeTime(end_s=60.0)
    manager = _DatabaseBack(failures=2)
    heartbeat = Heartbeat(manager, lease, clock=fake.clock).start()
    assert fake.parked.wait(WAIT_LIMIT_S)
    heartbeat.check()           # down at 10 and 20 s, renewed at 30 s: never 30 s without a renewal
    heartbeat.stop()
    assert heartbeat.lost is None and manager.failures == 0


DEVICES_YAML = """devices:
  - {name: orin-01, host: 192.0.2.10, port: 50051, backends: [tensorrt]}
  - {name: coral-01, host: 192.0.2.20, port: 50051, backends: [litert]}
  - {name: x86-01, host: 192.0.2.30, port: 50051, backends: [onnxruntime]}
"""


def test_cli_status_shows_idle_leased_and_quarantined_boards(tmp_path: Path, capsys) -> None:
    devices, url = tmp_path / "devices.yaml", sqlite_url(tmp_path / "leases.sqlite")
    devices.write_text(DEVICES_YAML)
    flags = ["--devices", str(devices), "--leases", url]
    with open_lease_manager(url) as leases:
        leases.acquire("orin-01", "nightly@ci-runner-3", "nightly [int8]", ttl_s=120)
    assert main(["devices", "quarantine", "coral-01", "--reason", "USB resets", *flags]) == 0
    assert main(["devices", "status", *flags]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert re.search(r"leased\s+│\s+nightly@ci-runner-3\s+│\s+nightly \[int8\]\s+│\s+1(19|20) s", rows["orin-01"])
    assert re.search(r"quarantined .*since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: USB resets", rows["coral-01"])
    assert "idle" in rows["x86-01"]
    assert main(["devices", "unquarantine", "coral-01", *flags]) == 2   # 192.0.2.20 answers no health check
    assert "coral-01 failed its health check" in capsys.readouterr().err
    assert main(["devices", "unquarantine", "coral-01", "--force", *flags]) == 0
    assert main(["devices", "status", *flags]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert "idle" in rows["coral-01"]


def test_cli_lease_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "devices.yaml").write_text(DEVICES_YAML)
    code = main(["devices", "status", "--devices", str(tmp_path / "devices.yaml"), "--leases", "redis://x"])
    assert code == 2
    assert capsys.readouterr().err.startswith("edgefarm: error: unknown lease database URL 'redis://x'")


def test_a_devices_file_that_declares_leases_is_used_and_another_is_refused(tmp_path: Path, capsys,
                                                                               monkeypatch) -> None:
    """Before: forgetting --leases on a shared farm silently used a per-machine SQLite file."""
    shared = sqlite_url(tmp_path / "shared" / "leases.sqlite")
    devices = tmp_path / "devices.yaml"
    devices.write_text(DEVICES_YAML + f"leases: {shared}\n")
    monkeypatch.setenv("EDGEFARM_DB", str(tmp_path / "results.sqlite"))  # its default leases would sit beside it
    assert main(["devices", "quarantine", "coral-01", "--reason", "USB resets", "--devices", str(devices)]) == 0
    with open_lease_manager(shared) as leases:
        assert leases.states(["coral-01"])[0].status == "quarantined"
    other = sqlite_url(tmp_path / "mine.sqlite")
    assert main(["devices", "status", "--devices", str(devices), "--leases", other]) == 2
    err = capsys.readouterr().err
    assert f"{devices}:5: this farm's lease database is {shared}, but --leases gives {other}; drop --leases" in err
    monkeypatch.setenv("EDGEFARM_LEASES", "postgresql://ci:s3cret@db/other")
    assert main(["devices", "status", "--devices", str(devices)]) == 2
    err = capsys.readouterr().err
    assert "but $EDGEFARM_LEASES gives postgresql://ci:***@db/other" in err and "s3cret" not in err
    monkeypatch.setenv("EDGEFARM_LEASES", shared)   # the same one is fine
    assert main(["devices", "status", "--devices", str(devices)]) == 0
