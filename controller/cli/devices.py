"""edgefarm devices check: validate a devices file and, optionally, reach each agent."""
from __future__ import annotations

import argparse
from pathlib import Path

from controller.client import AgentClient, AgentUnreachableError
from controller.inventory import load_inventory

EXAMPLES = """examples:
  edgefarm devices check devices.yaml
  edgefarm devices check devices.yaml --ping
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="inspect the device inventory", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="devices_command", required=True)
    check = dsub.add_parser("check", help="validate a devices file", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("file", type=Path, help="the devices.yaml to validate")
    check.add_argument("--ping", action="store_true", help="also ask each agent to Describe itself")
    check.set_defaults(handler=execute_check)


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
        except AgentUnreachableError as exc:
            unreachable += 1
            print(f"  {device.name}: unreachable: {exc}")
        finally:
            client.close()
    return 1 if unreachable else 0
