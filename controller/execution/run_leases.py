"""A farm run's side of the lease database: every call made off the event loop, on one thread of its
own; the boards of a wave taken in one statement (acquire_many); one LeaseKeeper renewing all of the
run's leases in one statement per beat. A board's lease is kept while the run has jobs for it and
given back once it has none, so a board that goes from job to job costs no lease statement at all."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgefarm.controller.execution.serial_thread import SerialThread
from edgefarm.controller.leases import DeviceState, Lease, LeaseKeeper, LeaseLost, LeaseManager
from edgefarm.controller.leases.base import quarantined_error

log = logging.getLogger(__name__)
PURPOSE = "edgefarm farm run"


@dataclass(frozen=True)
class Claim:
    """What asking for some boards gave: those now leased to this run, and why each other one is not."""

    leased: frozenset[str]
    quarantined: dict[str, str] = field(default_factory=dict)   # board → its quarantine, with the fix
    held: dict[str, str] = field(default_factory=dict)          # board → who holds it, for how long


class RunLeases:
    def __init__(self, manager: LeaseManager, owner: str, ttl_s: float, reclaim: str = "") -> None:
        """reclaim: an owner suffix whose leases are this run's to take over (a resume's own dead run)."""
        self._manager, self._owner, self._ttl_s, self._reclaim = manager, owner, ttl_s, reclaim
        self._thread = SerialThread("leases")
        # Two missed beats still leave a third before the deadline, as with a Heartbeat.
        self._keeper = LeaseKeeper(manager, ttl_s / 3, on_lost=_said_lost).start()

    def holds(self, device: str) -> bool:
        """Whether this run holds `device`'s lease (one found lost is not held)."""
        return self._keeper.lease(device) is not None

    def held(self) -> list[str]:
        return [lease.device for lease in self._keeper.leases()]

    async def claim(self, devices: Sequence[str]) -> Claim:
        """Lease every board of `devices` not already held, in one statement; LeaseError (or the
        database's own error) when the lease database fails."""
        wanted = [device for device in devices if not self.holds(device)]
        if wanted:
            taken = await self._thread.call(self._take, wanted)
            refused = await self._states([device for device in wanted if device not in taken])
        else:
            refused = []
        return Claim(frozenset(device for device in devices if self.holds(device)),
                     {s.device: str(quarantined_error([s])) for s in refused if s.status == "quarantined"},
                     {s.device: _holder(s) for s in refused if s.status != "quarantined"})

    def _take(self, devices: list[str]) -> dict[str, Lease]:
        """On the lease thread: kept from the moment they are taken, so a run cancelled while it
        waited for them (Ctrl-C) still gives them back in close()."""
        taken = self._manager.acquire_many(devices, self._owner, PURPOSE, self._ttl_s, self._reclaim)
        for lease in taken.values():
            self._keeper.add(lease)
        return taken

    def _give_back_all(self) -> None:
        """On the lease thread, after any take still queued there."""
        self._manager.release_many([lease for lease in map(self._keeper.remove, self.held()) if lease is not None])

    async def give_back(self, devices: Sequence[str]) -> None:
        leases = [lease for lease in map(self._keeper.remove, devices) if lease is not None]
        if leases:
            await self._thread.call(self._manager.release_many, leases)

    async def quarantine(self, device: str, reason: str) -> None:
        await self._thread.call(self._manager.quarantine, device, reason)

    async def unquarantine(self, device: str) -> None:
        await self._thread.call(self._manager.unquarantine, device)

    async def record_check(self, device: str, passed: bool, detail: str, checked_by: str,
                           next_in_s: float | None) -> None:
        await self._thread.call(self._manager.record_check, device, passed, detail, checked_by, next_in_s)

    async def close(self) -> None:
        """Give every lease back; one that cannot be (the database is down) runs out within its ttl."""
        self._keeper.stop()
        try:
            await self._thread.call(self._give_back_all)
        except Exception as exc:   # the run's own outcome matters more than a release the ttl makes up for
            log.warning("could not give back this run's leases (they run out by themselves): %s", exc)
        finally:
            self._thread.close()

    async def _states(self, devices: list[str]) -> list[DeviceState]:
        return await self._thread.call(self._manager.states, devices) if devices else []


def _holder(state: DeviceState) -> str:
    holder = state.lease
    return f"{holder.owner} ({holder.purpose}) for {state.expires_in_s:.0f} s more" if holder else "someone"


def _said_lost(lost: LeaseLost) -> None:
    """The job on the board runs on (its result is still real); the board is leased afresh before its next job."""
    log.warning("%s", lost)
