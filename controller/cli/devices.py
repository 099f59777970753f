"""edgefarm devices: validate a devices file, show who holds each board, quarantine broken ones."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgefarm.api.boards import Boards, BoardStatus
from edgefarm.controller.cli.common import farm
from edgefarm.controller.leases import format_time

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
    boards = _boards(args, args.file)
    inventory = boards.inventory()
    print(f"{args.file}: {len(inventory)} device(s) valid: {', '.join(inventory.names())}")
    if not args.ping:
        return 0
    pings = boards.ping()   # every board, whatever fails
    for ping in pings:
        print(f"  {ping.device}: {ping.cpu_model}, agent {ping.agent_version} ({ping.security})" if ping.ok
              else f"  {ping.device}: {ping.failure}: {ping.error}")
    return 0 if all(ping.ok for ping in pings) else 1


def execute_status(args: argparse.Namespace) -> int:
    boards = _boards(args, args.devices)
    checks = boards.health_check_all() if args.check else ()
    for check in checks:
        if check.returned_to_service:
            print(f"{check.device}: passed its health check; back in service")
    # Piped output (CI logs, `| tee`) would otherwise wrap the table at 80 columns.
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 180)
    console.print(status_table(boards.board_status()))
    failed = [check for check in checks if not check.passed]
    for check in failed:
        print(f"{check.device}: failed its health check: {check.detail}")
    return 1 if failed else 0


def execute_quarantine(args: argparse.Namespace) -> int:
    _boards(args, args.devices).quarantine(args.device, args.reason)
    print(f"{args.device}: quarantined ({args.reason}); new leases are refused until "
          f"'edgefarm devices unquarantine {args.device}'")
    return 0


def execute_unquarantine(args: argparse.Namespace) -> int:
    """Only a board that passes its health check (Describe + the canary) returns to service."""
    check = _boards(args, args.devices).unquarantine(args.device, force=args.force)
    if check.passed:
        print(f"{check.device}: passed its health check; can be leased again")
    else:
        print(f"{check.device}: can be leased again (--force; its health check failed: {check.detail})")
    return 0


def _boards(args: argparse.Namespace, devices: Path) -> Boards:
    return farm(args, devices).boards


def status_table(boards: tuple[BoardStatus, ...]) -> Table:
    table = Table(title="edgefarm devices")
    for title in ("device", "state", "owner", "purpose", "expires in", "quarantined", "last check", "next check"):
        table.add_column(title, justify="right" if title == "expires in" else "left")
    for board in boards:
        table.add_row(*_status_row(board))
    return table


def _status_row(board: BoardStatus) -> tuple[Text, ...]:
    # Text, not markup strings: an owner or purpose may hold brackets that rich would eat.
    state, lease, check = board.state, board.state.lease, board.last_check
    expires = f"{state.expires_in_s:.0f} s" if state.expires_in_s is not None else ""
    quarantined = (f"since {format_time(state.quarantined_since)}: {state.quarantine_reason}"
                   if state.quarantined_since is not None else "")
    if check is None:
        last = Text("never")
    else:
        last = Text(f"{'passed' if check.passed else 'failed'} {format_time(check.checked_at)}",
                    style="green" if check.passed else "red")
        last.append(f" by {check.checked_by}" + ("" if check.passed else f": {check.detail}"))
    return (Text(state.device), Text(state.status, style=_STATE_STYLES[state.status]),
            Text(lease.owner if lease else ""), Text(lease.purpose if lease else ""), Text(expires), Text(quarantined),
            last, Text(_next_check(board)))


def _next_check(board: BoardStatus) -> str:
    if board.next_check_overdue:
        return "when a run wants it, or 'devices status --check'"
    return format_time(board.next_check_due) if board.next_check_due else ""
