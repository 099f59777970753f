"""edgefarm ca: the farm's certificate authority for mutual TLS between controller and agents."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefarm.controller.cli.common import CliError

EXAMPLES = """examples:
  edgefarm ca init                      # in the user config dir (edgefarm/ca)
  edgefarm ca init --dir ./farm-ca
  edgefarm ca init --force              # replace the CA: every board needs 'edgefarm provision' again
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


def execute_init(args: argparse.Namespace) -> int:
    from edgefarm.controller.provision.ca import (
        CA_CERT_FILE,
        CA_KEY_FILE,
        CONTROLLER_NAME,
        ISSUED_DIR,
        TOKEN_FILE,
        CaError,
        default_ca_dir,
        init_ca,
    )

    directory = args.dir or default_ca_dir()
    try:
        ca = init_ca(directory, force=args.force)
    except CaError as error:
        raise CliError(str(error)) from None
    until = ca.certificate.not_valid_after_utc
    print(f"farm CA created in {directory}")
    print(f"  CA certificate: {directory / CA_CERT_FILE} ({ca.name}, valid until {until:%Y-%m-%d})")
    print(f"  CA key:         {directory / CA_KEY_FILE} (mode 0600; keep it on this machine)")
    print(f"  controller:     {directory / ISSUED_DIR / CONTROLLER_NAME}.crt (client certificate)")
    print(f"  token:          {directory / TOKEN_FILE} (fallback for boards that cannot do mTLS)")
    print("next: edgefarm provision DEVICE --devices devices.yaml")
    return 0
