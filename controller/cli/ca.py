"""edgefarm ca: the farm's certificate authority for mutual TLS between controller and agents."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefarm.controller.cli.common import farm

EXAMPLES = """examples:
  edgefarm ca init                      # in the user config dir (edgefarm/ca)
  edgefarm ca init --dir ./farm-ca
  edgefarm ca init --force              # replace the CA: every board needs 'edgefarm provision' again
  edgefarm ca issue jetson-orin-01      # a board's --tls-dir, without provisioning over SSH
  edgefarm ca issue jetson-orin-01 --out /media/usb/orin-tls --host orin-01.lab.example
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ca", help="manage the farm's certificate authority", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="ca_command", required=True)
    init = csub.add_parser("init", help="create the farm CA, its token and the controller's certificate",
                           epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("--dir", type=Path, default=None,
                      help="where the CA lives (default: $EDGEFARM_CA_DIR or the user config dir)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(handler=execute_init)
    issue = csub.add_parser("issue", help="write a board's certificate, key, CA and token (its --tls-dir)",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    issue.add_argument("device", help="device name from the devices file")
    issue.add_argument("--devices", type=Path, default=Path("devices.yaml"),
                       help="devices file (default: ./devices.yaml)")
    issue.add_argument("--out", type=Path, default=None, help="where to write the files (default: ./DEVICE-tls)")
    issue.add_argument("--host", action="append", dest="hosts", default=[], metavar="NAME",
                       help="another host name or address the board answers on, repeatable (its devices.yaml "
                            "host is always in the certificate)")
    issue.add_argument("--dir", type=Path, default=None,
                       help="the farm CA (default: $EDGEFARM_CA_DIR or the user config dir)")
    issue.set_defaults(handler=execute_issue)


def execute_init(args: argparse.Namespace) -> int:
    from edgefarm.api.boards import init_ca
    from edgefarm.controller.provision.ca import CA_CERT_FILE, CA_KEY_FILE, CONTROLLER_NAME, ISSUED_DIR, TOKEN_FILE

    ca = init_ca(args.dir, force=args.force)
    directory, until = ca.directory, ca.certificate.not_valid_after_utc
    print(f"farm CA created in {directory}")
    print(f"  CA certificate: {directory / CA_CERT_FILE} ({ca.name}, valid until {until:%Y-%m-%d})")
    print(f"  CA key:         {directory / CA_KEY_FILE} (mode 0600; keep it on this machine)")
    print(f"  controller:     {directory / ISSUED_DIR / CONTROLLER_NAME}.crt (client certificate)")
    print(f"  token:          {directory / TOKEN_FILE} (fallback for boards that cannot do mTLS)")
    print("next: edgefarm provision DEVICE --devices devices.yaml, or edgefarm ca issue DEVICE")
    return 0


def execute_issue(args: argparse.Namespace) -> int:
    """For boards provisioned by hand (or by your own tooling): the files `edgefarm provision` installs."""
    boards = farm(args, args.devices).boards
    issued = boards.issue_certificate(args.device, args.out, args.hosts, args.dir)
    device = boards.inventory().get(issued.device)
    print(f"{device.name}: certificate for {', '.join(issued.hosts)} written to {issued.directory}/ "
          f"({', '.join(issued.files)})")
    print(f"next: copy {issued.directory}/ to the board (keep it mode 0700) and start the agent there with\n"
          f"  edgefarm-agent serve --host 0.0.0.0 --port {device.port} --tls-dir DIR")
    if device.security != "tls":
        print(f"note: devices.yaml declares security: {device.security} for {device.name}; "
              "set security: tls so the controller dials it with TLS")
    return 0
