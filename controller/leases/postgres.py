"""Leases in PostgreSQL: for a team farm, where several controllers share one database.

Each board is one row of device_leases, and every change to a board is one statement on its
row. Taking a lease locks the first free row of the pool with SELECT ... FOR UPDATE SKIP LOCKED
and writes the new holder into it in the same statement, so two controllers racing for a board
serialise on that row's lock: the loser skips the locked row, or (once the winner committed)
re-reads it as taken. Deadlines are computed and compared with the database's now(), never a
controller's clock, so controllers with skewed clocks agree on when a lease runs out.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import conninfo

from edgefarm.controller.leases.base import (
    ROW_COLUMNS,
    DeviceState,
    HealthCheck,
    Lease,
    LeaseError,
    LeaseManager,
    like_suffix,
    lost_error,
    state_from_row,
)

# Serialises CREATE TABLE IF NOT EXISTS between controllers starting at once (it is not atomic).
_SCHEMA_LOCK_KEY = 0x6564676566617266   # "edgefarm"
_SCHEMA = """CREATE TABLE IF NOT EXISTS device_leases (
    device text PRIMARY KEY, token text, owner text, purpose text, acquired_at timestamptz,
    expires_at timestamptz, ttl_s double precision, quarantined_since timestamptz, quarantine_reason text)"""
_CHECKS_SCHEMA = """CREATE TABLE IF NOT EXISTS health_checks (
    device text NOT NULL, checked_at timestamptz NOT NULL DEFAULT now(), passed boolean NOT NULL,
    detail text NOT NULL, checked_by text NOT NULL, next_due timestamptz)"""
_CHECKS_INDEX = "CREATE INDEX IF NOT EXISTS health_checks_by_device ON health_checks (device, checked_at)"
_RECORD_CHECK = """INSERT INTO health_checks (device, passed, detail, checked_by, next_due)
VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"""
_LAST_CHECKS = """SELECT DISTINCT ON (device) device, checked_at, passed, detail, checked_by, next_due
FROM health_checks WHERE device = ANY(%s::text[]) ORDER BY device, checked_at DESC"""
_TAKE_FIRST_FREE = """
WITH chosen AS (
    SELECT device FROM device_leases
    WHERE device = ANY(%(pool)s::text[]) AND quarantined_since IS NULL
      AND (token IS NULL OR expires_at <= now() OR owner LIKE %(reclaim)s ESCAPE '\\')
    ORDER BY array_position(%(pool)s::text[], device) LIMIT 1
    FOR UPDATE SKIP LOCKED)
UPDATE device_leases AS board
SET token = %(token)s, owner = %(owner)s, purpose = %(purpose)s, acquired_at = now(),
    expires_at = now() + make_interval(secs => %(ttl_s)s), ttl_s = %(ttl_s)s
FROM chosen WHERE board.device = chosen.device
RETURNING board.device, board.acquired_at, board.expires_at"""
# The same rule as _TAKE_FIRST_FREE, for every board of a wave at once, each under its own token.
_TAKE_ALL_FREE = """
WITH chosen AS (
    SELECT board.device, wanted.token FROM device_leases AS board
    JOIN unnest(%(pool)s::text[], %(tokens)s::text[]) AS wanted (device, token) ON wanted.device = board.device
    WHERE board.quarantined_since IS NULL
      AND (board.token IS NULL OR board.expires_at <= now() OR board.owner LIKE %(reclaim)s ESCAPE '\\')
    FOR UPDATE OF board SKIP LOCKED)
UPDATE device_leases AS board
SET token = chosen.token, owner = %(owner)s, purpose = %(purpose)s, acquired_at = now(),
    expires_at = now() + make_interval(secs => %(ttl_s)s), ttl_s = %(ttl_s)s
FROM chosen WHERE board.device = chosen.device
RETURNING board.device, board.acquired_at, board.expires_at"""
_RENEW_ALL = """UPDATE device_leases SET expires_at = now() + make_interval(secs => ttl_s)
WHERE token = ANY(%s::text[]) AND expires_at > now() RETURNING token, expires_at"""
_RELEASE_ALL = """UPDATE device_leases SET token = NULL, owner = NULL, purpose = NULL, acquired_at = NULL,
    expires_at = NULL, ttl_s = NULL WHERE token = ANY(%s::text[])"""
_RENEW = """UPDATE device_leases SET expires_at = now() + make_interval(secs => ttl_s)
WHERE device = %s AND token = %s AND expires_at > now() RETURNING expires_at"""
_RELEASE = """UPDATE device_leases SET token = NULL, owner = NULL, purpose = NULL, acquired_at = NULL,
    expires_at = NULL, ttl_s = NULL WHERE device = %s AND token = %s"""
# A second quarantine updates the reason but keeps the first "since".
_QUARANTINE = """INSERT INTO device_leases (device, quarantined_since, quarantine_reason) VALUES (%s, now(), %s)
ON CONFLICT (device) DO UPDATE SET quarantine_reason = EXCLUDED.quarantine_reason,
    quarantined_since = COALESCE(device_leases.quarantined_since, now())"""
_UNQUARANTINE = "UPDATE device_leases SET quarantined_since = NULL, quarantine_reason = NULL WHERE device = %s"
_STATES = f"""SELECT asked.device, {', '.join('board.' + name for name in ROW_COLUMNS[1:])}, now()
FROM unnest(%s::text[]) WITH ORDINALITY AS asked (device, position)
LEFT JOIN device_leases AS board ON board.device = asked.device ORDER BY asked.position"""


class PostgresLeaseManager(LeaseManager):
    def __init__(self, url: str, connect_timeout_s: int = 10, lock_timeout_s: int = 10) -> None:
        self._where = _describe(url)
        self._known: set[str] = set()   # boards whose row exists; rows are never deleted
        try:
            # Autocommit: every statement is its own transaction and holds a row lock only while it runs.
            # psycopg connections are thread-safe, so a Heartbeat's thread can share this one.
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout_s)
        except psycopg.Error as exc:
            raise LeaseError(f"cannot connect to the lease database {self._where}: {_first_line(exc)}; "
                             f"check --leases / $EDGEFARM_LEASES") from exc
        self._run(f"SET lock_timeout = '{int(lock_timeout_s)}s'")
        self._run("SET TIME ZONE 'UTC'")
        with self._db.transaction():
            self._run("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in (_SCHEMA, _CHECKS_SCHEMA, _CHECKS_INDEX):
                self._run(statement)

    def close(self) -> None:
        self._db.close()

    def _take_first_free(self, pool: list[str], owner: str, purpose: str, ttl_s: float,
                         token: str, reclaim: str) -> Lease | None:
        self._ensure_rows(pool)
        rows = self._run(_TAKE_FIRST_FREE, {"pool": pool, "token": token, "owner": owner, "purpose": purpose,
                                            "ttl_s": ttl_s, "reclaim": like_suffix(reclaim)})
        if not rows:
            return None
        device, acquired_at, expires_at = rows[0]
        return Lease(device, owner, purpose, token, acquired_at, expires_at, ttl_s)

    def _take_all_free(self, tokens: dict[str, str], owner: str, purpose: str, ttl_s: float,
                       reclaim: str) -> dict[str, Lease]:
        pool = list(tokens)
        self._ensure_rows(pool)
        rows = self._run(_TAKE_ALL_FREE, {"pool": pool, "tokens": [tokens[name] for name in pool], "owner": owner,
                                          "purpose": purpose, "ttl_s": ttl_s, "reclaim": like_suffix(reclaim)})
        return {device: Lease(device, owner, purpose, tokens[device], acquired_at, expires_at, ttl_s)
                for device, acquired_at, expires_at in rows}

    def _renew_all(self, leases: list[Lease]) -> dict[str, datetime]:
        return dict(self._run(_RENEW_ALL, ([lease.token for lease in leases],)))

    def _release_all(self, leases: list[Lease]) -> None:
        self._run(_RELEASE_ALL, ([lease.token for lease in leases],))

    def renew(self, lease: Lease) -> Lease:
        rows = self._run(_RENEW, (lease.device, lease.token))
        if not rows:
            raise lost_error(lease, self.states([lease.device])[0])
        return replace(lease, expires_at=rows[0][0])

    def release(self, lease: Lease) -> None:
        self._run(_RELEASE, (lease.device, lease.token))

    def quarantine(self, device: str, reason: str) -> None:
        if not reason:
            raise LeaseError(f"quarantining {device!r} needs a reason, e.g. 'camera not detected'")
        self._run(_QUARANTINE, (device, reason))
        self._known.add(device)

    def unquarantine(self, device: str) -> None:
        self._run(_UNQUARANTINE, (device,))

    def record_check(self, device: str, passed: bool, detail: str, checked_by: str,
                     next_in_s: float | None = None) -> None:
        self._run(_RECORD_CHECK, (device, passed, detail, checked_by, next_in_s))   # NULL secs: no next check

    def last_checks(self, devices: Sequence[str]) -> dict[str, HealthCheck]:
        return {row[0]: HealthCheck(*row) for row in self._run(_LAST_CHECKS, (list(devices),))}

    def states(self, devices: Sequence[str]) -> list[DeviceState]:
        rows = self._run(_STATES, (list(devices),))
        return [state_from_row(row[:-1], row[-1]) for row in rows]

    def _ensure_rows(self, devices: list[str]) -> None:
        # Committed before the locking statement: a row another controller is still inserting
        # would be invisible to it, not locked, and the board would look missing rather than busy.
        missing = [name for name in devices if name not in self._known]
        if missing:
            self._run("INSERT INTO device_leases (device) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                      (missing,))
            self._known.update(missing)

    def _run(self, sql: str, params: Any = None) -> list[tuple]:
        try:
            cursor = self._db.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise LeaseError(f"lease database {self._where}: {_first_line(exc)}") from exc


def _describe(url: str) -> str:
    """user@host:port/dbname, without the password, for messages."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise LeaseError(f"not a PostgreSQL URL: {_first_line(exc)}; e.g. postgresql://user@host/dbname") from exc
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
