"""edgefarm provision: install, upgrade and start the agent on a board over SSH."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from edgefarm.controller.cli.common import farm

EXAMPLES = """examples:
  edgefarm provision jetson-orin-01 --devices devices.yaml --ssh-user nvidia --accept-new-host-key
  edgefarm provision rpi5-coral-01 --ssh-key ~/.ssh/farm_ed25519 --upgrade
  edgefarm provision x86-01 --wheel dist/edgefarm-0.1.0-py3-none-any.whl \\
      --pip-args='--no-index --find-links /srv/wheels'
Run 'edgefarm ca init' once first: every board gets a certificate from the farm CA.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provision", help="install or upgrade the agent on a board over SSH", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("device", help="device name from the devices file")
    p.add_argument("--devices", type=Path, default=None, help="devices file (default: ./devices.yaml)")
    p.add_argument("--upgrade", action="store_true", help="replace the installed agent (stop, reinstall, start)")
    ssh = p.add_argument_group("ssh")
    ssh.add_argument("--ssh-user", default=None, help="login on the board (default: your user name)")
    ssh.add_argument("--ssh-key", type=Path, default=None,
                     help="private key (default: the ssh-agent's keys and ~/.ssh/id_*)")
    ssh.add_argument("--ssh-port", type=int, default=22, help="the board's SSH port")
    ssh.add_argument("--known-hosts", type=Path, default=Path.home() / ".ssh" / "known_hosts",
                     help="host keys to trust (default: ~/.ssh/known_hosts)")
    ssh.add_argument("--accept-new-host-key", action="store_true",
                     help="trust a board whose host key is not known yet, and remember it")
    install = p.add_argument_group("installing")
    install.add_argument("--wheel", type=Path, default=None,
                         help="agent wheel to install (default: build one from this checkout)")
    install.add_argument("--ca-dir", type=Path, default=None,
                         help="farm CA (default: $EDGEFARM_CA_DIR or the user config dir)")
    install.add_argument("--pip-args", default="", metavar="'ARGS'",
                         help="extra arguments for pip on the board, with '=': --pip-args='--no-index ...'")
    install.add_argument("--venv-system-site-packages", action="store_true",
                         help="let the agent's venv see the board's system Python packages")
    install.add_argument("--board-python", default="python3", help="the board's Python 3.8+ (default: python3)")
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    report = farm(args, args.devices).boards.provision(
        args.device, ssh_user=args.ssh_user, ssh_key=args.ssh_key, ssh_port=args.ssh_port,
        known_hosts=args.known_hosts, accept_new_host_key=args.accept_new_host_key, wheel=args.wheel,
        ca_dir=args.ca_dir, upgrade=args.upgrade, pip_args=shlex.split(args.pip_args),
        venv_system_site_packages=args.venv_system_site_packages, board_python=args.board_python)
    print(report.summary())
    return 0
