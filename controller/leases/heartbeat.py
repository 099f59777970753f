"""Keeping leases alive while jobs run: a daemon thread that renews one lease every ttl/3 (Heartbeat),
or every lease of a farm run in one statement per beat (LeaseKeeper)."""
from __future__ import annotations

import threading
from collections.abc import Callable

from edgefarm.agent.sensors.base import SYSTEM_CLOCK, WaitClock
from edgefarm.controller.leases.base import Lease, LeaseError, LeaseLost, LeaseManager, Renewal


class Heartbeat:
    """Renews `lease` from a daemon thread every ttl/3 until stop() or release().

    Two missed beats still leave a third before the deadline. When a renewal finds the lease
    lost (it expired, maybe taken by another owner), the thread stops, `lost` holds the
    LeaseLost and `on_lost` is called with it; check() raises it, so the job can stop using the
    board at its next safe point. A database that does not answer is retried on the next beat
    until the lease would have run out, then counts as lost too. `clock` is the real one
    unless a test ticks its own.
    """

    def __init__(self, manager: LeaseManager, lease: Lease, interval_s: float | None = None,
                 on_lost: Callable[[LeaseLost], None] | None = None, clock: WaitClock = SYSTEM_CLOCK) -> None:
        self._manager = manager
        self._lease = lease
        self.interval_s = interval_s if interval_s is not None else lease.ttl_s / 3
        self._on_lost = on_lost
        self._clock = clock
        self.lost: LeaseLost | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{lease.device}", daemon=True)

    @property
    def lease(self) -> Lease:
        """The lease as last renewed (its expires_at moves forward)."""
        return self._lease

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def check(self) -> None:
        """Raise LeaseLost if the lease has been lost; a no-op while it is held."""
        if self.lost is not None:
            raise self.lost

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop renewing (the lease then runs out by itself); waits for a renewal in flight."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def release(self) -> None:
        """Stop renewing and give the board back."""
        self.stop()
        self._manager.release(self._lease)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _beat(self) -> None:
        now, wait = self._clock.now, self._clock.wait
        last_renewed = now()
        while not wait(self._stopping, self.interval_s):
            try:
                self._lease = self._manager.renew(self._lease)
                last_renewed = now()
            except LeaseLost as exc:
                self._flag(exc)
                return
            except LeaseError as exc:
                if now() - last_renewed >= self._lease.ttl_s:
                    self._flag(LeaseLost(f"lease on {self._lease.device!r} not renewed for "
                                         f"{self._lease.ttl_s:g} s, so it has run out: {exc}", self._lease.device))
                    return

    def _flag(self, lost: LeaseLost) -> None:
        self.lost = lost
        if self._on_lost is not None:
            self._on_lost(lost)


class LeaseKeeper:
    """Keeps every lease of a farm run alive from one daemon thread: each beat renews all of them in
    one statement (renew_many), where a Heartbeat per lease would take a thread and a statement each.

    The rules are Heartbeat's, lease by lease: a renewal that finds a lease lost drops it, keeps its
    LeaseLost (lost(), check()) and calls `on_lost`; a database that does not answer is retried on
    the next beat until a lease has gone its ttl without renewal, and then that lease counts as lost.
    Leases come and go while it runs (add, remove). Call stop() when done; it releases nothing.
    """

    def __init__(self, manager: LeaseManager, interval_s: float, on_lost: Callable[[LeaseLost], None] | None = None,
                 clock: WaitClock = SYSTEM_CLOCK) -> None:
        self._manager, self.interval_s, self._on_lost, self._clock = manager, interval_s, on_lost, clock
        self._held: dict[str, tuple[Lease, float]] = {}   # device → (lease as last renewed, when renewed)
        self._lost: dict[str, LeaseLost] = {}
        self._guard = threading.Lock()   # add/remove come from the caller's thread, renewals from ours
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-keeper", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop renewing (the leases then run out by themselves); waits for a renewal in flight."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def add(self, lease: Lease) -> None:
        with self._guard:
            self._held[lease.device] = (lease, self._clock.now())
            self._lost.pop(lease.device, None)

    def remove(self, device: str) -> Lease | None:
        """Stop renewing `device`'s lease and hand it back (None if none is held), e.g. to release it."""
        with self._guard:
            self._lost.pop(device, None)
            held = self._held.pop(device, None)
        return None if held is None else held[0]

    def lease(self, device: str) -> Lease | None:
        """`device`'s lease as last renewed; None when none is held or it was lost."""
        with self._guard:
            held = self._held.get(device)
        return None if held is None else held[0]

    def leases(self) -> list[Lease]:
        with self._guard:
            return [lease for lease, _ in self._held.values()]

    def lost(self, device: str) -> LeaseLost | None:
        return self._lost.get(device)

    def check(self, device: str) -> None:
        """Raise LeaseLost if `device`'s lease has been lost; a no-op while it is held."""
        lost = self._lost.get(device)
        if lost is not None:
            raise lost

    def _beat(self) -> None:
        while not self._clock.wait(self._stopping, self.interval_s):
            leases = self.leases()
            if not leases:
                continue
            try:
                renewal = self._manager.renew_many(leases)
            except LeaseError as exc:
                self._give_up_overdue(exc)
                continue
            self._settle(renewal)

    def _settle(self, renewal: Renewal) -> None:
        now = self._clock.now()
        with self._guard:   # a lease removed or taken again meanwhile is not ours to update
            for lease in renewal.renewed:
                if self._is_held(lease):
                    self._held[lease.device] = (lease, now)
        for lost in renewal.lost:
            self._drop(lost)

    def _give_up_overdue(self, exc: LeaseError) -> None:
        now = self._clock.now()
        with self._guard:
            overdue = [lease for lease, renewed in self._held.values() if now - renewed >= lease.ttl_s]
        for lease in overdue:
            self._drop(LeaseLost(f"lease on {lease.device!r} not renewed for {lease.ttl_s:g} s, so it has run out: "
                                 f"{exc}", lease.device))

    def _drop(self, lost: LeaseLost) -> None:
        with self._guard:
            if lost.device not in self._held:
                return   # released meanwhile: nothing was lost
            del self._held[lost.device]
            self._lost[lost.device] = lost
        if self._on_lost is not None:
            self._on_lost(lost)

    def _is_held(self, lease: Lease) -> bool:
        held = self._held.get(lease.device)
        return held is not None and held[0].token == lease.token
