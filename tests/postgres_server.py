"""A real PostgreSQL server for the tests, started on loopback by a session fixture.

It runs Debian's server binaries (initdb, pg_ctl) in a temporary folder with its own socket and a
free port, and stops the server at the end. PostgreSQL refuses to run as root, so under root it
runs as the unprivileged `postgres` user the Debian package creates. conftest.py exposes
`postgres_url` (one database for the session) and `postgres_database` (a fresh database per test).
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg  # a controller dependency: the shared results store and leases
import pytest

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


def free_port() -> int:
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
    port = free_port()
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
def postgres_database(postgres_url: str) -> str:
    """A new, empty database on the session's server, as a team's fresh results store."""
    name = f"edgefarm_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"
