"""controller/leases on a real PostgreSQL server, started by this module on loopback.

The session fixture runs Debian's server binaries (initdb, pg_ctl) in a temporary folder with
its own socket and a free port, and stops the server at the end. PostgreSQL refuses to run as
root, so under root it runs as the unprivileged `postgres` user the Debian package creates.
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.leases import LeaseError, open_lease_manager
from tests.test_leases import LeaseContract

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL leases need psycopg: pip install 'psycopg[binary]'")

SERVER_USER = "postgres"
DATABASE = "edgefarm_test"
COMMAND_LIMIT_S = 60


def _server_binaries() -> Path | None:
    """Debian keeps them out of PATH, in /usr/lib/postgresql/<major>/bin; the newest wins."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--", *command]
    return ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(command)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=COMMAND_LIMIT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")


def _server_folder() -> Path:
    # Not pytest's tmp_path: that sits under a root-only folder the server user cannot enter.
    folder = Path(tempfile.mkdtemp(prefix="edgefarm-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
    return folder


def _start_server(binaries: Path, folder: Path) -> int:
    port = _free_port()
    _run([str(binaries / "initdb"), "-D", str(folder / "data"), "-U", "edgefarm", "-A", "trust",
          "-E", "UTF8", "--no-locale", "--no-sync"])
    # fsync off: a test server's data need not survive a power cut, and the suite stays fast.
    options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        _run([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"),
              "-w", "-t", "30", "-o", options, "start"])
    except RuntimeError as exc:
        log = folder / "server.log"
        raise RuntimeError(f"{exc}\n{log.read_text() if log.exists() else ''}") from exc
    return port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    binaries = _server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's 'postgresql' package")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {SERVER_USER!r} user to run the server as: "
                        "install Debian's 'postgresql' package, which creates it")
    folder = _server_folder()
    try:
        port = _start_server(binaries, folder)
        try:
            with psycopg.connect(f"postgresql://edgefarm@127.0.0.1:{port}/postgres", autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {DATABASE}")
            yield f"postgresql://edgefarm@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "-t", "30", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    url = f"postgresql://edgefarm:s3cret@127.0.0.1:{_free_port()}/farm"
    with pytest.raises(LeaseError, match=r"cannot connect to the lease database "
                                         r"postgresql://edgefarm@127\.0\.0\.1:\d+/farm") as caught:
        open_lease_manager(url)
    assert "s3cret" not in str(caught.value)
