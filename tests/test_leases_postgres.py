"""controller/leases on a real PostgreSQL server, started on loopback (tests/postgres_server.py)."""
from __future__ import annotations

import time

import pytest

from edgefarm.controller.leases import LeaseError, open_lease_manager
from tests.postgres_server import free_port
from tests.test_leases import LeaseContract

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL leases need psycopg: pip install 'psycopg[binary]'")


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> str:
    """The test database with no lease table, as a farm's first controller finds it."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SET lock_timeout = '10s'")
        admin.execute("DROP TABLE IF EXISTS device_leases")
    return postgres_url


class TestPostgresLeases(LeaseContract):
    @pytest.fixture
    def lease_url(self, fresh_postgres_url: str) -> str:
        return fresh_postgres_url


def test_a_board_locked_by_another_controller_is_skipped_not_waited_for(fresh_postgres_url: str) -> None:
    with open_lease_manager(fresh_postgres_url) as leases:
        for device in ("pi-a", "pi-b"):   # make both rows, idle
            leases.release(leases.acquire(device, "setup", "make the rows", ttl_s=30))
        with psycopg.connect(fresh_postgres_url) as other_controller:
            # Mid-transaction on pi-a's row, as another controller taking a lease on it would be.
            other_controller.execute("SELECT 1 FROM device_leases WHERE device = 'pi-a' FOR UPDATE")
            lease = leases.acquire_any(["pi-a", "pi-b"], "alice@laptop", "debugging", ttl_s=30)
            assert lease is not None and lease.device == "pi-b"
            assert leases.acquire("pi-a", "alice@laptop", "debugging", ttl_s=30) is None
            other_controller.rollback()
        assert leases.acquire("pi-a", "alice@laptop", "debugging", ttl_s=30) is not None


def test_a_wave_skips_the_boards_another_controller_is_locking(fresh_postgres_url: str) -> None:
    with open_lease_manager(fresh_postgres_url) as leases:
        leases.release_many(list(leases.acquire_many(["pi-a", "pi-b", "pi-c"], "setup", "rows", ttl_s=30).values()))
        with psycopg.connect(fresh_postgres_url) as other_controller:
            other_controller.execute("SELECT 1 FROM device_leases WHERE device = 'pi-b' FOR UPDATE")
            taken = leases.acquire_many(["pi-a", "pi-b", "pi-c"], "alice@laptop", "debugging", ttl_s=30)
            assert sorted(taken) == ["pi-a", "pi-c"]   # not blocked on pi-b's row lock
            other_controller.rollback()
        assert list(leases.acquire_many(["pi-a", "pi-b", "pi-c"], "bob@laptop", "debugging", ttl_s=30)) == ["pi-b"]


def test_deadlines_come_from_the_database_clock(fresh_postgres_url: str, monkeypatch) -> None:
    with open_lease_manager(fresh_postgres_url) as leases, psycopg.connect(fresh_postgres_url) as db:
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600)   # this controller's clock is an hour fast
        lease = leases.acquire("orin-01", "alice@laptop", "debugging", ttl_s=60)
        stored = db.execute("SELECT acquired_at, expires_at, now() FROM device_leases").fetchone()
        assert (lease.acquired_at, lease.expires_at) == stored[:2]
        assert abs((stored[2] - lease.acquired_at).total_seconds()) < 5
        assert 59 < leases.states(["orin-01"])[0].expires_in_s <= 60


def test_connection_errors_name_the_database_without_its_password() -> None:
    url = f"postgresql://edgefarm:s3cret@127.0.0.1:{free_port()}/farm"
    with pytest.raises(LeaseError, match=r"cannot connect to the lease database "
                                         r"postgresql://edgefarm@127\.0\.0\.1:\d+/farm") as caught:
        open_lease_manager(url)
    assert "s3cret" not in str(caught.value)
