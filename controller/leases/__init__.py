"""Leases on boards, so a nightly run and an engineer never use one board at once.

Two databases behind one interface, picked by URL: SQLite for one controller host
(`sqlite:///path/to/leases.sqlite`) and PostgreSQL for a team farm whose controllers share one
database (`postgresql://user@host/dbname`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from edgefarm.controller.leases.base import (
    DeviceQuarantinedError,
    DeviceState,
    HealthCheck,
    Lease,
    LeaseError,
    LeaseLost,
    LeaseManager,
    Renewal,
    default_owner,
    format_time,
)
from edgefarm.controller.leases.heartbeat import Heartbeat, LeaseKeeper

__all__ = ["DeviceQuarantinedError", "DeviceState", "HealthCheck", "Heartbeat", "Lease", "LeaseError", "LeaseKeeper",
           "LeaseLost", "LeaseManager", "Renewal", "URL_FORMS", "default_owner", "format_time", "open_lease_manager",
           "sqlite_url"]

URL_FORMS = ("sqlite:///path/to/leases.sqlite", "postgresql://user@host:5432/dbname")


def sqlite_url(path: Path | str) -> str:
    return f"sqlite://{Path(path).absolute()}"


def open_lease_manager(url: str) -> LeaseManager:
    """The lease database at `url`; LeaseError for an unknown scheme, naming the valid forms."""
    scheme = url.partition("://")[0]
    if scheme not in _OPENERS or "://" not in url:
        raise LeaseError(f"unknown lease database URL {url!r}; valid forms: {', '.join(URL_FORMS)}")
    return _OPENERS[scheme](url)


def _open_sqlite(url: str) -> LeaseManager:
    from edgefarm.controller.leases.sqlite import SqliteLeaseManager

    path = url[len("sqlite://"):]
    if not path:
        raise LeaseError(f"{url!r} names no file; e.g. {URL_FORMS[0]}")
    return SqliteLeaseManager(Path(path))


def _open_postgres(url: str) -> LeaseManager:
    try:
        from edgefarm.controller.leases.postgres import PostgresLeaseManager
    except ImportError as exc:   # psycopg comes with the controller extra
        raise LeaseError(f"PostgreSQL leases need psycopg: pip install 'edgefarm[controller]' ({exc})") from exc
    return PostgresLeaseManager(url)


_OPENERS: Mapping[str, Callable[[str], LeaseManager]] = MappingProxyType({
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,   # libpq accepts both spellings
})
