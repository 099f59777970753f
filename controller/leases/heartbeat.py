"""Keeping a lease alive while a job runs: a daemon thread that renews it every ttl/3."""
from __future__ import annotations

import threading
from collections.abc import Callable

from edgefarm.agent.sensors.base import SYSTEM_CLOCK, WaitClock
from edgefarm.controller.leases.base import Lease, LeaseError, LeaseLost, LeaseManager


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
                                         f"{self._lease.ttl_s:g} s, so it has run out: {exc}"))
                    return

    def _flag(self, lost: LeaseLost) -> None:
        self.lost = lost
        if self._on_lost is not None:
            self._on_lost(lost)
