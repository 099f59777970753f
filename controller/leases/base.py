"""Leases on boards: the records, the errors and the one interface both databases implement.

A lease is a row per board holding who has it and until when. The holder's heartbeat pushes the
deadline forward; a controller that dies stops pushing, and once the deadline passes the lease
is simply not counted, so no cleanup daemon is needed. Deadlines are taken from the lease
database's clock, so two controllers with skewed clocks still agree on who holds a board.
"""
from __future__ import annotations

import getpass
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

# The columns of one board's row, in this order, in both backends.
ROW_COLUMNS = ("device", "token", "owner", "purpose", "acquired_at", "expires_at", "ttl_s",
               "quarantined_since", "quarantine_reason")
Status = Literal["idle", "leased", "quarantined"]


class LeaseError(Exception):
    """A lease cannot be had or kept; the message says what to do about it."""


class DeviceQuarantinedError(LeaseError):
    """Every board asked for is quarantined: a person must check it before it runs jobs again."""


class LeaseLost(LeaseError):
    """A lease expired (and may have been taken by another owner) before it was renewed."""

    def __init__(self, message: str, device: str = "") -> None:
        super().__init__(message)
        self.device = device    # the board whose lease it was


@dataclass(frozen=True)
class Lease:
    """One owner's hold on one board; `token` tells this hold apart from later ones."""

    device: str
    owner: str
    purpose: str
    token: str
    acquired_at: datetime       # the lease database's clock, UTC
    expires_at: datetime        # pushed forward by renew()
    ttl_s: float


@dataclass(frozen=True)
class Renewal:
    """What one renew_many did: the leases renewed (new deadlines) and why each of the others was lost."""

    renewed: tuple[Lease, ...]
    lost: tuple[LeaseLost, ...]


@dataclass(frozen=True)
class DeviceState:
    """What the lease database says about one board; whether it answers on the network is the caller's."""

    device: str
    checked_at: datetime        # the lease database's clock when this was read
    lease: Lease | None = None  # a live lease only: an expired one is not counted
    quarantined_since: datetime | None = None
    quarantine_reason: str = ""

    @property
    def status(self) -> Status:
        if self.quarantined_since is not None:
            return "quarantined"
        return "leased" if self.lease is not None else "idle"

    @property
    def expires_in_s(self) -> float | None:
        """Seconds the lease has left by the database's clock; None when not leased."""
        return None if self.lease is None else (self.lease.expires_at - self.checked_at).total_seconds()


@dataclass(frozen=True)
class HealthCheck:
    """One health check of a board (Describe plus the canary), as stored in the lease database."""

    device: str
    checked_at: datetime          # the lease database's clock, UTC
    passed: bool
    detail: str                   # "ok", or why it failed
    checked_by: str               # who and why, e.g. "nightly@ci-3 (quarantine)"
    next_due: datetime | None     # when the farm checks it again; None: nothing scheduled


class LeaseManager(ABC):
    """Takes, renews and gives back leases on boards, and quarantines broken ones."""

    def acquire(self, device: str, owner: str, purpose: str, ttl_s: float, reclaim: str = "") -> Lease | None:
        """A lease on `device`, or None while someone else holds it.

        Raises DeviceQuarantinedError when the board is quarantined: waiting would not help.
        reclaim: see acquire_any.
        """
        return self.acquire_any([device], owner, purpose, ttl_s, reclaim)

    def acquire_any(self, devices: Sequence[str], owner: str, purpose: str, ttl_s: float,
                    reclaim: str = "") -> Lease | None:
        """A lease on the first free board of `devices` (in that order), or None while all are held.

        Quarantined boards are passed over; when every one of them is quarantined this raises
        DeviceQuarantinedError. reclaim: an owner suffix ("/RUN_ID") whose live leases count as free:
        a resume taking over the leases of its own run, whose controller died holding them.
        """
        check_request(devices, owner, ttl_s)
        pool = list(dict.fromkeys(devices))
        lease = self._take_first_free(pool, owner, purpose, float(ttl_s), uuid.uuid4().hex, reclaim)
        if lease is None:
            states = self.states(pool)
            if all(state.status == "quarantined" for state in states):
                raise quarantined_error(states)
        return lease

    def acquire_many(self, devices: Sequence[str], owner: str, purpose: str, ttl_s: float,
                     reclaim: str = "") -> dict[str, Lease]:
        """A lease on every board of `devices` that is free, by device, in one atomic step (one statement
        on PostgreSQL, one transaction on SQLite): a farm's wave of jobs takes its boards at once
        instead of one round trip and one commit per board.

        Boards held by someone else or quarantined are left out, never waited for; states() says
        which is which. reclaim: see acquire_any.
        """
        check_request(devices, owner, ttl_s)
        tokens = {device: uuid.uuid4().hex for device in dict.fromkeys(devices)}
        return self._take_all_free(tokens, owner, purpose, float(ttl_s), reclaim)

    def renew_many(self, leases: Sequence[Lease]) -> Renewal:
        """Every lease's deadline pushed its ttl_s past now, in one step; each that had expired or been
        taken comes back as the LeaseLost renew() would raise (LeaseLost.device names its board)."""
        if not leases:
            return Renewal((), ())
        deadlines = self._renew_all(list(leases))
        gone = [lease for lease in leases if lease.token not in deadlines]
        now = self.states([lease.device for lease in gone]) if gone else []
        return Renewal(tuple(replace(lease, expires_at=deadlines[lease.token]) for lease in leases
                             if lease.token in deadlines),
                       tuple(lost_error(lease, state) for lease, state in zip(gone, now, strict=True)))

    def release_many(self, leases: Sequence[Lease]) -> None:
        """Give every board back in one step; a lease already lost is left alone."""
        if leases:
            self._release_all(list(leases))

    @abstractmethod
    def _take_first_free(self, pool: list[str], owner: str, purpose: str, ttl_s: float,
                         token: str, reclaim: str) -> Lease | None:
        """In one atomic step: the first board of `pool` neither leased (except by an owner ending in
        `reclaim`, when given) nor quarantined, leased to `owner`."""

    @abstractmethod
    def _take_all_free(self, tokens: dict[str, str], owner: str, purpose: str, ttl_s: float,
                       reclaim: str) -> dict[str, Lease]:
        """In one atomic step: every board of `tokens` (device → new token) that _take_first_free
        could take, leased to `owner` under its token."""

    @abstractmethod
    def _renew_all(self, leases: list[Lease]) -> dict[str, datetime]:
        """In one step: the new deadline of each lease still held (by token); the lost are left out."""

    @abstractmethod
    def _release_all(self, leases: list[Lease]) -> None:
        """In one step: free each board whose lease (token) is still the one given."""

    @abstractmethod
    def renew(self, lease: Lease) -> Lease:
        """The same lease with its deadline pushed ttl_s past now; LeaseLost if it expired or was taken."""

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the board back; a lease already lost is left alone."""

    @abstractmethod
    def quarantine(self, device: str, reason: str) -> None:
        """Refuse new leases on `device` until unquarantine(); a current lease runs on until released."""

    @abstractmethod
    def unquarantine(self, device: str) -> None:
        """Let `device` be leased again."""

    @abstractmethod
    def record_check(self, device: str, passed: bool, detail: str, checked_by: str,
                     next_in_s: float | None = None) -> None:
        """Store one health check's outcome; next_in_s: when the next one is due, if one is scheduled."""

    @abstractmethod
    def last_checks(self, devices: Sequence[str]) -> dict[str, HealthCheck]:
        """The newest stored check of each board that has one."""

    @abstractmethod
    def states(self, devices: Sequence[str]) -> list[DeviceState]:
        """Each board's state, in the order asked; boards never seen before are idle."""

    @abstractmethod
    def close(self) -> None:
        """Close the database connection."""

    def __enter__(self) -> LeaseManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def default_owner() -> str:
    """user@host, e.g. alice@laptop: who a lease belongs to unless told otherwise."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def check_request(devices: Sequence[str], owner: str, ttl_s: float) -> None:
    if isinstance(devices, str) or not devices or not all(devices):
        raise LeaseError(f"a lease needs one or more device names, got {devices!r}")
    if not owner:
        raise LeaseError("a lease needs an owner, e.g. 'nightly@ci-runner-3'")
    if not ttl_s > 0:
        raise LeaseError(f"a lease's ttl_s must be > 0 seconds, got {ttl_s}")


def state_from_row(row: Sequence[object], checked_at: datetime) -> DeviceState:
    """A DeviceState from one row in ROW_COLUMNS order (times already as UTC datetimes)."""
    device, token, owner, purpose, acquired_at, expires_at, ttl_s, since, reason = row
    lease = None
    if token is not None and expires_at > checked_at:  # type: ignore[operator]
        lease = Lease(device, owner, purpose, token, acquired_at, expires_at, ttl_s)  # type: ignore[arg-type]
    return DeviceState(device, checked_at, lease, since, reason or "")  # type: ignore[arg-type]


def quarantined_error(states: Sequence[DeviceState]) -> DeviceQuarantinedError:
    """Why none of `states` (all quarantined) can be leased, and what to do about it."""
    reasons = [f"device {state.device!r} is quarantined since {format_time(state.quarantined_since)}: "
               f"{state.quarantine_reason}; run 'edgefarm devices unquarantine {state.device}' after checking it"
               for state in states]
    return DeviceQuarantinedError(" / ".join(reasons))


def lost_error(lease: Lease, now: DeviceState) -> LeaseLost:
    """`lease` could not be renewed; `now` says who, if anyone, holds the board instead."""
    holder = (f"it is now held by {now.lease.owner} ({now.lease.purpose})" if now.lease is not None
              else "it is free again")
    return LeaseLost(f"lease on {lease.device!r} for {lease.owner} ({lease.purpose}) was lost: its deadline "
                     f"{format_time(lease.expires_at)} passed or it was released before renewal, and {holder}; "
                     f"stop using the board", lease.device)


def like_suffix(suffix: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching strings that end in `suffix`; "" matches nothing."""
    if not suffix:
        return ""
    return "%" + suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def format_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
