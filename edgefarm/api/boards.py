"""`farm.boards`: what `edgefarm devices`, `edgefarm provision` and `edgefarm ca` do, as Python calls
that return typed records and DataFrames. The CLI's devices, provision and ca commands call these."""
from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from edgefarm.api.errors import BadInputError, translated
from edgefarm.controller.config.inventory import Device, Inventory, load_inventory
from edgefarm.controller.leases import DeviceState, HealthCheck, LeaseManager, default_owner, open_lease_manager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ping:
    """One board's answer to Describe, dialled as devices.yaml declares (`devices check --ping`).

    Example:
        >>> [p.error for p in farm.boards.ping() if not p.ok]
        ["device 'orin-01' at 192.0.2.10:50051: the agent's certificate is not from this farm's CA; ..."]
    """

    device: str
    address: str
    security: str
    ok: bool
    cpu_model: str = ""
    agent_version: str = ""
    failure: str = ""        # unreachable, refused or cannot dial
    error: str = ""          # the one-line reason


@dataclass(frozen=True)
class CheckOutcome:
    """One health check (Describe plus the canary), as stored in the lease database.

    Example:
        >>> [(c.device, c.detail) for c in farm.boards.health_check_all() if not c.passed]
    """

    device: str
    passed: bool
    detail: str
    returned_to_service: bool = False


@dataclass(frozen=True)
class BoardStatus:
    """A board as `edgefarm devices status` shows it: its lease, quarantine and last health check.

    Example:
        >>> [(b.state.device, b.state.status, b.next_check_due) for b in farm.boards.board_status()]
    """

    state: DeviceState
    last_check: HealthCheck | None

    @property
    def next_check_due(self) -> datetime | None:
        """When the farm checks this quarantined board next; None when nothing is scheduled."""
        check = self.last_check
        if check is None or self.state.status != "quarantined":
            return None
        return check.next_due

    @property
    def next_check_overdue(self) -> bool:
        """The check was due and did not happen: the run that was healing the board has ended (the
        next run that wants it checks it, or `devices status --check` now)."""
        due = self.next_check_due
        return due is not None and due < self.state.checked_at

    def row(self) -> dict[str, object]:
        lease, check = self.state.lease, self.last_check
        return {"device": self.state.device, "state": self.state.status,
                "owner": lease.owner if lease else "", "purpose": lease.purpose if lease else "",
                "expires_in_s": self.state.expires_in_s, "quarantined_since": self.state.quarantined_since,
                "quarantine_reason": self.state.quarantine_reason,
                "last_check_at": check.checked_at if check else None,
                "last_check_passed": check.passed if check else None,
                "last_check_detail": check.detail if check else "", "next_check_due": self.next_check_due,
                "next_check_overdue": self.next_check_overdue}


@dataclass(frozen=True)
class IssuedCertificate:
    """A board's --tls-dir written by `issue_certificate`: the files, and the hosts the certificate names.

    Example:
        >>> farm.boards.issue_certificate("jetson-orin-01").directory
        PosixPath('jetson-orin-01-tls')
    """

    device: str
    directory: Path
    files: tuple[str, ...]
    hosts: tuple[str, ...]


class Boards:
    """The boards of a devices file: their leases, quarantine, health checks, certificates and agents.

    Example:
        >>> boards = edgefarm.Farm(devices="devices.yaml").boards
        >>> boards.status(check=True)[["device", "state", "last_check_passed", "next_check_due"]]
    """

    def __init__(self, devices: Path, leases_url: Callable[[], str]) -> None:
        self.devices, self._leases_url = devices, leases_url

    def inventory(self) -> Inventory:
        """devices.yaml, validated (BadInputError naming file and line otherwise).

        Example:
            >>> boards.inventory().names()
        """
        with translated():
            return load_inventory(self.devices)

    def ping(self) -> tuple[Ping, ...]:
        """Describe on every board, dialled as declared; every board is reported, whatever fails.

        Example:
            >>> [(p.device, p.ok, p.error) for p in boards.ping()]
        """
        return tuple(_ping(device) for device in self.inventory())

    def status(self, check: bool = False) -> pd.DataFrame:
        """One row per board: idle / leased by whom / quarantined, its last health check and the next.
        check: health-check every board first (see health_check_all).

        Example:
            >>> boards.status()[["device", "state", "owner", "expires_in_s"]]
        """
        if check:
            self.health_check_all()
        return pd.DataFrame([board.row() for board in self.board_status()])

    def board_status(self) -> tuple[BoardStatus, ...]:
        """Each board's state and last stored health check, in the devices file's order.

        Example:
            >>> [b.state.status for b in boards.board_status()]
        """
        names = self.inventory().names()
        with self._leases() as leases:
            checks = leases.last_checks(names)
            return tuple(BoardStatus(state, checks.get(state.device)) for state in leases.states(names))

    def health_check_all(self) -> tuple[CheckOutcome, ...]:
        """Health-check every board at once; each outcome is stored, and a quarantined board that
        passes returns to service.

        Example:
            >>> [c.device for c in boards.health_check_all() if not c.passed]
        """
        devices = list(self.inventory())
        results = asyncio.run(_check_all(devices))
        with self._leases() as leases:
            return tuple(_settle(leases, device, ok, why, ok, "devices status --check")
                         for device, (ok, why) in zip(devices, results, strict=True))

    def quarantine(self, device: str, reason: str) -> None:
        """Refuse new leases on `device` until it passes a health check.

        Example:
            >>> boards.quarantine("rpi5-coral-01", "Coral not detected on USB")
        """
        name = self._device(device).name
        with self._leases() as leases:
            leases.quarantine(name, reason)

    def unquarantine(self, device: str, force: bool = False) -> CheckOutcome:
        """Health-check `device`, and let it be leased again only if it passes (force: even if not;
        logged and stored). Raises BadInputError when it fails without force.

        Example:
            >>> boards.unquarantine("rpi5-coral-01").passed
            True
        """
        from edgefarm.controller.agents.canary import health_check

        board = self._device(device)
        ok, why = asyncio.run(health_check(board))
        with self._leases() as leases:
            outcome = _settle(leases, board, ok, why, ok or force,
                              f"devices unquarantine{' --force' if force else ''}")
        if not ok and not force:
            raise BadInputError(f"{board.name} failed its health check: {why}; it stays quarantined "
                                "(fix the board, or pass --force to return it anyway)")
        if not ok:
            log.warning("%s returned to service by --force although its health check failed: %s", board.name, why)
        return outcome

    def issue_certificate(self, device: str, out: str | Path | None = None, hosts: Sequence[str] = (),
                          ca_dir: str | Path | None = None) -> IssuedCertificate:
        """Write the board's --tls-dir (farm CA, its certificate and key, the farm token) without
        provisioning: for boards set up by hand or by your own tooling.

        Example:
            >>> boards.issue_certificate("jetson-orin-01", out="orin-tls", hosts=["orin-01.lab"]).files
            ('ca.crt', 'agent.crt', 'agent.key', 'token')
        """
        from edgefarm.controller.provision.ca import board_tls_files, default_ca_dir, load_ca

        board = self._device(device)
        directory = Path(out) if out is not None else Path(f"{board.name}-tls")
        names = tuple(dict.fromkeys([board.host, *hosts]))
        with translated():
            files = board_tls_files(load_ca(Path(ca_dir) if ca_dir else default_ca_dir()), board.name, list(names))
        _write_private_dir(directory, files)
        return IssuedCertificate(board.name, directory, tuple(files), names)

    def provision(self, device: str, *, ssh_user: str | None = None, ssh_key: str | Path | None = None,
                  ssh_port: int = 22, known_hosts: str | Path | None = None, accept_new_host_key: bool = False,
                  wheel: str | Path | None = None, ca_dir: str | Path | None = None, upgrade: bool = False,
                  pip_args: Sequence[str] = (), venv_system_site_packages: bool = False,
                  board_python: str = "python3"):  # -> ProvisionReport (paramiko loads only when called)
        """Install (or with upgrade, replace) the agent on `device` over SSH, start it as a service
        serving the security devices.yaml declares, and check it answers. Returns a ProvisionReport.

        Example:
            >>> boards.provision("rpi5-coral-01", ssh_user="pi", upgrade=True).summary()
        """
        import getpass

        from edgefarm.controller.provision.ca import default_ca_dir
        from edgefarm.controller.provision.deploy import InstallSettings, SshSettings, provision

        board = self._device(device)
        ssh = SshSettings(ssh_user or getpass.getuser(), ssh_port, Path(ssh_key) if ssh_key else None,
                          Path(known_hosts) if known_hosts else Path.home() / ".ssh" / "known_hosts",
                          accept_new_host_key)
        with translated(), _agent_wheel(wheel) as built:
            settings = InstallSettings(built, Path(ca_dir) if ca_dir else default_ca_dir(), upgrade,
                                       tuple(pip_args), venv_system_site_packages, board_python)
            return provision(board, ssh, settings)

    def _device(self, name: str) -> Device:
        with translated():
            return self.inventory().get(name)

    @contextmanager
    def _leases(self) -> Iterator[LeaseManager]:
        with translated(), open_lease_manager(self._leases_url()) as leases:
            yield leases


def init_ca(directory: str | Path | None = None, force: bool = False):  # -> FarmCa
    """Create the farm's certificate authority, its token and the controller's certificate
    (`edgefarm ca init`). force: replace an existing CA (every board then needs a new certificate).

    Example:
        >>> edgefarm.init_ca("farm-ca").name
        'edgefarm farm CA ...'
    """
    from edgefarm.controller.provision.ca import default_ca_dir
    from edgefarm.controller.provision.ca import init_ca as create

    with translated():
        return create(Path(directory) if directory else default_ca_dir(), force=force)


def _ping(device: Device) -> Ping:
    from edgefarm.controller.agents.client import AgentClient, AgentRejectedError, AgentUnreachableError
    from edgefarm.controller.agents.security import SecurityError

    base = {"device": device.name, "address": device.address, "security": device.security}
    try:
        client = AgentClient.for_device(device, connect_timeout_s=3)
    except SecurityError as exc:
        return Ping(**base, ok=False, failure="cannot dial", error=str(exc))
    try:
        info = client.connect()
    except AgentUnreachableError as exc:
        return Ping(**base, ok=False, failure="unreachable", error=str(exc))
    except AgentRejectedError as exc:  # it answered but refused (a wrong token): report it, go on to the next
        return Ping(**base, ok=False, failure="refused", error=str(exc))
    finally:
        client.close()
    return Ping(**base, ok=True, cpu_model=info.cpu_model, agent_version=info.agent_version)


async def _check_all(devices: list[Device]) -> list[tuple[bool, str]]:
    from edgefarm.controller.agents.canary import health_check

    return list(await asyncio.gather(*(health_check(device) for device in devices)))


def _settle(leases: LeaseManager, device: Device, ok: bool, why: str, release: bool, command: str) -> CheckOutcome:
    """Store the check; with `release`, a quarantined board returns to service."""
    log.info("health check of %s: %s", device.name, "passed" if ok else f"failed: {why}")
    leases.record_check(device.name, ok, why, f"{default_owner()} ({command})")
    returned = release and leases.states([device.name])[0].status == "quarantined"
    if returned:
        leases.unquarantine(device.name)
    return CheckOutcome(device.name, ok, why, returned)


def _write_private_dir(out: Path, files: dict[str, bytes]) -> None:
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, data in files.items():
            path = out / name
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_bytes(data)
    except OSError as error:
        raise BadInputError(f"cannot write the board's TLS files to {out}: {error.strerror}; "
                            "pick another --out") from None


@contextmanager
def _agent_wheel(wheel: str | Path | None) -> Iterator[Path]:
    if wheel is not None:
        yield Path(wheel)
        return
    from edgefarm.controller.provision.deploy import build_agent_wheel, source_checkout

    with tempfile.TemporaryDirectory(prefix="edgefarm-wheel-") as out_dir:
        log.info("building the agent wheel from this checkout")
        yield build_agent_wheel(source_checkout(), Path(out_dir))


__all__ = ["BoardStatus", "Boards", "CheckOutcome", "IssuedCertificate", "Ping", "init_ca"]
