"""The engineer's path (`edgefarm run --device X`) leases the board for the whole run, the
same way the farm does, so an engineer and the nightly job never measure on it at once."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from controller.leases import Heartbeat, LeaseError, default_owner, open_lease_manager

LEASE_TTL_S = 60.0


@contextmanager
def board_lease(device: str, leases_url: str, purpose: str) -> Iterator[None]:
    with open_lease_manager(leases_url) as leases:
        lease = leases.acquire(device, default_owner(), purpose, LEASE_TTL_S)
        if lease is None:
            (state,) = leases.states([device])
            holder = state.lease
            who = f"{holder.owner} ({holder.purpose}) for {state.expires_in_s:.0f} s more" if holder else "someone"
            raise LeaseError(f"device {device!r} is leased by {who}; try again later, or see 'edgefarm devices status'")
        with Heartbeat(leases, lease):
            yield
