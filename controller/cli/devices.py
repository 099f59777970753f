"""edgefarm devices: validate a devices file, show who holds each board, quarantine broken ones."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgefarm.controller.agents.canary import health_check
from edgefarm.controller.agents.client import AgentClient, AgentRejectedError, AgentUnreachableError
from edgefarm.controller.agents.records import DeviceInfo
from edgefarm.controller.agents.security import SecurityError
from edgefarm.controller.cli.common import CliError, leases_url
from edgefarm.controller.config.inventory import Device, load_inventory
from edgefarm.controller.leases import (
    DeviceState,
    HealthCheck,
    LeaseError,
    LeaseManager,
    default_owner,
    format_time,
    open_lease_manager,
)

log = logging.getLogger(__name__)
EXAMPLES = """examples:
  edgefarm devices check devices.yaml
  edgefarm devices check devices.yaml --ping
  edgefarm devices status --leases postgresql://edgefarm@farm-db/edgefarm
  edgefarm devices status --check          # health-check every board now; quarantined ones that pass return
  edgefarm devices quarantine rpi5-coral-01 --reason "Coral not detected on USB"
  edgefarm devices unquarantine rpi5-coral-01
"""
_STATE_STYLES = {"idle": "green", "leased": "yellow", "quarantined": "bold red"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="inspect the device inventory and who holds each board", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="devices_command", required=True)
    check = dsub.add_parser("check", help="validate a devices file", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("file", type=Path, help="the devices.yaml to validate")
    check.add_argument("--ping", action="store_true", help="also ask each agent to Describe itself")
    check.set_defaults(handler=execute_check)
    _register_lease_commands(dsub)


def _register_lease_commands(dsub: argparse._SubParsersAction) -> None:
    status = dsub.add_parser("status", help="each board: idle, leased by whom until when, or quarantined; "
                                            "its last health check and when the next is due")
    status.add_argument("--check", action="store_true",
                        help="health-check every board now (Describe + the canary), store the outcomes, and "
                             "return quarantined boards that pass to service; exit 1 if any fails")
    status.set_defaults(handler=execute_status)
    quarantine = dsub.add_parser("quarantine", help="refuse new leases on a board until it is checked")
    quarantine.add_argument("device", help="device name from the devices file")
    quarantine.add_argument("--reason", required=True, help="what is wrong, shown to whoever asks for the board")
    quarantine.set_defaults(handler=execute_quarantine)
    unquarantine = dsub.add_parser("unquarantine", help="health-check a board, and let it be leased again if it passes")
    unquarantine.add_argument("device", help="device name from the devices file")
    unquarantine.add_argument("--force", action="store_true",
                              help="return the board even if its health check fails (logged)")
    unquarantine.set_defaults(handler=execute_unquarantine)
    for parser in (status, quarantine, unquarantine):
        parser.add_argument("--devices", type=Path, default=Path("devices.yaml"),
                            help="devices file (default: ./devices.yaml)")
        parser.add_argument("--leases", default=None, metavar="URL",
                            help="lease database: sqlite:///path or postgresql://user@host/db (default: "
                                 "$EDGEFARM_LEASES, else leases.sqlite beside the results database)")


def execute_check(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.file)
    print(f"{args.file}: {len(inventory)} device(s) valid: {', '.join(inventory.names())}")
    if not args.ping:
        return 0
    unreachable = 0
    for device in inventory:
        try:
            info = _describe(device)
            print(f"  {device.name}: {info.cpu_model}, agent {info.agent_version} ({device.security})")
        except (AgentUnreachableError, AgentRejectedError, SecurityError) as exc:  # report every board, then fail
            unreachable += 1
            print(f"  {device.name}: {_ping_failure(exc)}: {exc}")
    return 1 if unreachable else 0


def _ping_failure(exc: Exception) -> str:
    if isinstance(exc, AgentUnreachableError):
        return "unreachable"
    return "cannot dial" if isinstance(exc, SecurityError) else "refused"


def _describe(device: Device) -> DeviceInfo:
    client = AgentClient.for_device(device, connect_timeout_s=3)
    try:
        return client.connect()
    finally:
        client.close()


def execute_status(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.devices)
    with lease_manager(args) as leases:
        failed = _check_all(list(inventory), leases) if args.check else []
        states, checks = leases.states(inventory.names()), leases.last_checks(inventory.names())
    # Piped output (CI logs, `| tee`) would otherwise wrap the table at 80 columns.
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 180)
    console.print(status_table(states, checks))
    for name, why in failed:
        print(f"{name}: failed its health check: {why}")
    return 1 if failed else 0


def _check_all(devices: list[Device], leases: LeaseManager) -> list[tuple[str, str]]:
    """Every board checked at once; each outcome stored, and a quarantined board that passes returned."""
    async def check_all() -> list[tuple[bool, str]]:
        return await asyncio.gather(*(health_check(device) for device in devices))

    quarantined = {state.device for state in leases.states([d.name for d in devices]) if state.status == "quarantined"}
    failed = []
    for device, (ok, why) in zip(devices, asyncio.run(check_all()), strict=False):
        log.info("health check of %s: %s", device.name, "passed" if ok else f"failed: {why}")
        leases.record_check(device.name, ok, why, f"{default_owner()} (devices status --check)")
        if ok and device.name in quarantined:
            leases.unquarantine(device.name)
            print(f"{device.name}: passed its health check; back in service")
        elif not ok:
            failed.append((device.name, why))
    return failed


def execute_quarantine(args: argparse.Namespace) -> int:
    device = load_inventory(args.devices).get(args.device).name
    with lease_manager(args) as leases:
        leases.quarantine(device, args.reason)
    print(f"{device}: quarantined ({args.reason}); new leases are refused until "
          f"'edgefarm devices unquarantine {device}'")
    return 0


def execute_unquarantine(args: argparse.Namespace) -> int:
    """Only a board that passes its health check (Describe + the canary) returns to service."""
    device = load_inventory(args.devices).get(args.device)
    ok, why = asyncio.run(health_check(device))
    with lease_manager(args) as leases:
        leases.record_check(device.name, ok, why, f"{default_owner()} (devices unquarantine"
                                                  f"{' --force' if args.force else ''})")
        if not ok and not args.force:
            raise CliError(f"{device.name} failed its health check: {why}; it stays quarantined "
                           f"(fix the board, or pass --force to return it anyway)")
        leases.unquarantine(device.name)
    if ok:
        print(f"{device.name}: passed its health check; can be leased again")
    else:
        log.warning("%s returned to service by --force although its health check failed: %s", device.name, why)
        print(f"{device.name}: can be leased again (--force; its health check failed: {why})")
    return 0



@contextmanager
def lease_manager(args: argparse.Namespace) -> Iterator[LeaseManager]:
    """The lease database the flags name; its errors become one-line CLI errors."""
    try:
        with open_lease_manager(leases_url(args)) as leases:
            yield leases
    except LeaseError as exc:
        raise CliError(str(exc)) from exc


def status_table(states: list[DeviceState], checks: Mapping[str, HealthCheck]) -> Table:
    table = Table(title="edgefarm devices")
    for title in ("device", "state", "owner", "purpose", "expires in", "quarantined", "last check", "next check"):
        table.add_column(title, justify="right" if title == "expires in" else "left")
    for state in states:
        table.add_row(*_status_row(state), *_check_cells(checks.get(state.device), state))
    return table


def _check_cells(check: HealthCheck | None, state: DeviceState) -> tuple[Text, Text]:
    if check is None:
        return Text("never"), Text("")
    outcome = Text(f"{'passed' if check.passed else 'failed'} {format_time(check.checked_at)}",
                   style="green" if check.passed else "red")
    outcome.append(f" by {check.checked_by}" + ("" if check.passed else f": {check.detail}"))
    if check.next_due is None or state.status != "quarantined":
        return outcome, Text("")
    if check.next_due < state.checked_at:   # the run that was healing it has ended
        return outcome, Text("when a run wants it, or 'devices status --check'")
    return outcome, Text(format_time(check.next_due))


def _status_row(state: DeviceState) -> tuple[Text, ...]:
    # Text, not markup strings: an owner or purpose may hold brackets that rich would eat.
    lease = state.lease
    expires = f"{state.expires_in_s:.0f} s" if state.expires_in_s is not None else ""
    quarantined = (f"since {format_time(state.quarantined_since)}: {state.quarantine_reason}"
                   if state.quarantined_since is not None else "")
    return (Text(state.device), Text(state.status, style=_STATE_STYLES[state.status]),
            Text(lease.owner if lease else ""), Text(lease.purpose if lease else ""), Text(expires), Text(quarantined))
