"""Leases in a SQLite file: for one controller host (a laptop, a single CI runner).

Every change runs under BEGIN IMMEDIATE, which takes the file's write lock before the first
read, so two processes on the same file see each other's leases and never double-book a board.
Deadlines use this host's clock (time.time()); every process sharing the file runs on this host.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

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
    utc_from_epoch,
)

_SCHEMA = """CREATE TABLE IF NOT EXISTS device_leases (
    device TEXT PRIMARY KEY, token TEXT, owner TEXT, purpose TEXT, acquired_at REAL, expires_at REAL,
    ttl_s REAL, quarantined_since REAL, quarantine_reason TEXT)"""
_CHECKS_SCHEMA = """CREATE TABLE IF NOT EXISTS health_checks (
    device TEXT NOT NULL, checked_at REAL NOT NULL, passed INTEGER NOT NULL, detail TEXT NOT NULL,
    checked_by TEXT NOT NULL, next_due REAL)"""
_CHECKS_INDEX = "CREATE INDEX IF NOT EXISTS health_checks_by_device ON health_checks (device, checked_at)"
_TIME_COLUMNS = tuple(ROW_COLUMNS.index(name) for name in ("acquired_at", "expires_at", "quarantined_since"))
_TAKE = "UPDATE device_leases SET token = ?, owner = ?, purpose = ?, acquired_at = ?, expires_at = ?, ttl_s = ? " \
        "WHERE device = ?"
_NO_LEASE = "token = NULL, owner = NULL, purpose = NULL, acquired_at = NULL, expires_at = NULL, ttl_s = NULL"


class SqliteLeaseManager(LeaseManager):
    def __init__(self, path: Path | str, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        # A Heartbeat renews from its own thread over this same connection; the lock takes turns.
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            for statement in (_SCHEMA, _CHECKS_SCHEMA, _CHECKS_INDEX):
                self._db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise LeaseError(f"lease database {self.path} cannot be opened: {exc}; "
                             f"pass another with --leases or $EDGEFARM_LEASES") from exc

    def close(self) -> None:
        self._db.close()

    def _take_first_free(self, pool: list[str], owner: str, purpose: str, ttl_s: float,
                         token: str, reclaim: str) -> Lease | None:
        with self._transaction() as db:
            now = time.time()
            free = _free_boards(db, pool, now, reclaim)
            chosen = next((name for name in pool if name in free), None)
            if chosen is not None:
                db.execute(_TAKE, (token, owner, purpose, now, now + ttl_s, ttl_s, chosen))
        if chosen is None:
            return None
        return Lease(chosen, owner, purpose, token, utc_from_epoch(now), utc_from_epoch(now + ttl_s), ttl_s)

    def _take_all_free(self, tokens: dict[str, str], owner: str, purpose: str, ttl_s: float,
                       reclaim: str) -> dict[str, Lease]:
        with self._transaction() as db:   # one write lock for the wave, one commit
            now = time.time()
            free_now = _free_boards(db, list(tokens), now, reclaim)
            free = [name for name in tokens if name in free_now]
            db.executemany(_TAKE, [(tokens[name], owner, purpose, now, now + ttl_s, ttl_s, name) for name in free])
        since, until = utc_from_epoch(now), utc_from_epoch(now + ttl_s)
        return {name: Lease(name, owner, purpose, tokens[name], since, until, ttl_s) for name in free}

    def _renew_all(self, leases: list[Lease]) -> dict[str, datetime]:
        tokens = [lease.token for lease in leases]
        marks = ", ".join("?" * len(tokens))
        with self._transaction() as db:
            now = time.time()
            # No UPDATE ... RETURNING: SQLite has it only since 3.35, older than some distributions ship.
            held = db.execute(f"SELECT token, ttl_s FROM device_leases WHERE token IN ({marks}) AND expires_at > ?",
                              (*tokens, now)).fetchall()
            db.execute(f"UPDATE device_leases SET expires_at = ? + ttl_s WHERE token IN ({marks}) AND expires_at > ?",
                       (now, *tokens, now))
        return {token: utc_from_epoch(now + ttl_s) for token, ttl_s in held}

    def _release_all(self, leases: list[Lease]) -> None:
        marks = ", ".join("?" * len(leases))
        with self._transaction() as db:
            db.execute(f"UPDATE device_leases SET {_NO_LEASE} WHERE token IN ({marks})",
                       tuple(lease.token for lease in leases))

    def renew(self, lease: Lease) -> Lease:
        with self._transaction() as db:
            now = time.time()
            renewed = db.execute("UPDATE device_leases SET expires_at = ? WHERE device = ? AND token = ? "
                                 "AND expires_at > ?", (now + lease.ttl_s, lease.device, lease.token, now)).rowcount
        if not renewed:
            raise lost_error(lease, self.states([lease.device])[0])
        return replace(lease, expires_at=utc_from_epoch(now + lease.ttl_s))

    def release(self, lease: Lease) -> None:
        with self._transaction() as db:
            db.execute(f"UPDATE device_leases SET {_NO_LEASE} WHERE device = ? AND token = ?",
                       (lease.device, lease.token))

    def quarantine(self, device: str, reason: str) -> None:
        if not reason:
            raise LeaseError(f"quarantining {device!r} needs a reason, e.g. 'camera not detected'")
        with self._transaction() as db:
            # A second quarantine updates the reason but keeps the first "since".
            db.execute("INSERT INTO device_leases (device, quarantined_since, quarantine_reason) VALUES (?, ?, ?) "
                       "ON CONFLICT (device) DO UPDATE SET quarantine_reason = excluded.quarantine_reason, "
                       "quarantined_since = COALESCE(quarantined_since, excluded.quarantined_since)",
                       (device, time.time(), reason))

    def unquarantine(self, device: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE device_leases SET quarantined_since = NULL, quarantine_reason = NULL "
                       "WHERE device = ?", (device,))

    def record_check(self, device: str, passed: bool, detail: str, checked_by: str,
                     next_in_s: float | None = None) -> None:
        with self._transaction() as db:
            now = time.time()
            db.execute("INSERT INTO health_checks VALUES (?, ?, ?, ?, ?, ?)",
                       (device, now, passed, detail, checked_by, None if next_in_s is None else now + next_in_s))

    def last_checks(self, devices: Sequence[str]) -> dict[str, HealthCheck]:
        marks = ", ".join("?" * len(devices))
        with self._lock:
            rows = self._execute(
                "SELECT device, MAX(checked_at), passed, detail, checked_by, next_due FROM health_checks "
                f"WHERE device IN ({marks}) GROUP BY device", tuple(devices))   # SQLite: the other columns follow MAX()
        return {row[0]: HealthCheck(row[0], utc_from_epoch(row[1]), bool(row[2]), row[3], row[4],
                                    utc_from_epoch(row[5])) for row in rows}

    def states(self, devices: Sequence[str]) -> list[DeviceState]:
        marks = ", ".join("?" * len(devices))
        with self._lock:
            now = time.time()
            rows = self._execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM device_leases WHERE device IN ({marks})",
                                 tuple(devices))
        by_device = {row[0]: _with_datetimes(row) for row in rows}
        checked_at = utc_from_epoch(now)
        empty = (None,) * (len(ROW_COLUMNS) - 1)
        return [state_from_row(by_device.get(name, (name, *empty)), checked_at) for name in devices]

    def _execute(self, sql: str, params: tuple) -> list[tuple]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LeaseError(f"lease database {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LeaseError(f"lease database {self.path} stayed locked by another process: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise LeaseError(f"lease database {self.path}: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

def _free_boards(db: sqlite3.Connection, pool: list[str], now: float, reclaim: str) -> set[str]:
    """The boards of `pool` neither leased (but by an owner ending in `reclaim`) nor quarantined; every
    board gets its row on first sight. Inside the caller's transaction."""
    db.executemany("INSERT OR IGNORE INTO device_leases (device) VALUES (?)", [(name,) for name in pool])
    marks = ", ".join("?" * len(pool))
    return {row[0] for row in db.execute(
        f"SELECT device FROM device_leases WHERE device IN ({marks}) AND quarantined_since IS NULL "
        "AND (token IS NULL OR expires_at <= ? OR owner LIKE ? ESCAPE '\\')", (*pool, now, like_suffix(reclaim)))}


def _with_datetimes(row: tuple) -> tuple:
    return tuple(utc_from_epoch(value) if index in _TIME_COLUMNS else value for index, value in enumerate(row))
