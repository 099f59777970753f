"""edgefarm devices: validate a devices file, show who holds each board, quarantine broken ones."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgefarm.controller.agents.canary import health_check
from edgefarm.controller.agents.client import AgentClient, AgentRejectedError, AgentUnreachableError
from edgefarm.controller.cli.common import CliError, leases_url
from edgefarm.controller.config.inventory import load_inventory
from edgefarm.controller.leases import DeviceState, LeaseError, LeaseManager, format_time, open_lease_manager

log = logging.getLogger(__name__)
EXAMPLES = """examples:
  edgefarm devices check devices.yaml
  edgefarm devices check devices.yaml --ping
  edgefarm devices status --leases postgresql://edgefarm@farm-db/edgefarm
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
    status = dsub.add_parser("status", help="each board: idle, leased by whom until when, or quarantined")
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
        client = AgentClient(device.name, device.address, connect_timeout_s=3)
        try:
            info = client.connect()
            print(f"  {device.name}: {info.cpu_model}, agent {info.agent_version}")
        except (AgentUnreachableError, AgentRejectedError) as exc:  # report every board, then fail
            unreachable += 1
            print(f"  {device.name}: {'unreachable' if isinstance(exc, AgentUnreachableError) else 'refused'}: {exc}")
        finally:
            client.close()
    return 1 if unreachable else 0


def execute_status(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.devices)
    with lease_manager(args) as leases:
        states = leases.states(inventory.names())
    # Piped output (CI logs, `| tee`) would otherwise wrap the table at 80 columns.
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 150)
    console.print(status_table(states))
    return 0


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
    ok, why = asyncio.run(health_check(device.name, device.address, device.backends))
    if not ok and not args.force:
        raise CliError(f"{device.name} failed its health check: {why}; it stays quarantined "
                       f"(fix the board, or pass --force to return it anyway)")
    with lease_manager(args) as leases:
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


def status_table(states: list[DeviceState]) -> Table:
    table = Table(title="edgefarm devices")
    for title in ("device", "state", "owner", "purpose", "expires in", "quarantined"):
        table.add_column(title, justify="right" if title == "expires in" else "left")
    for state in states:
        table.add_row(*_status_row(state))
    return table


def _status_row(state: DeviceState) -> tuple[Text, ...]:
    # Text, not markup strings: an owner or purpose may hold brackets that rich would eat.
    lease = state.lease
    expires = f"{state.expires_in_s:.0f} s" if state.expires_in_s is not None else ""
    quarantined = (f"since {format_time(state.quarantined_since)}: {state.quarantine_reason}"
                   if state.quarantined_since is not None else "")
    return (Text(state.device), Text(state.status, style=_STATE_STYLES[state.status]),
            Text(lease.owner if lease else ""), Text(lease.purpose if lease else ""), Text(expires), Text(quarantined))
