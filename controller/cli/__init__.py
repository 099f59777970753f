"""The edgefarm command line: one module per subcommand."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from edgefarm.controller import __version__
from edgefarm.controller.cli import (
    bisect,
    ca,
    demo,
    devices,
    diff,
    history,
    nightly,
    provision,
    report,
    run,
    runs,
    tune,
)
from edgefarm.controller.cli.common import CliError

SUBCOMMANDS = (demo, run, runs, report, diff, history, devices, nightly, bisect, tune, provision, ca)
EXAMPLES = """examples:
  edgefarm demo                                   # digits-cnn × 4 recipes on a local agent
  edgefarm run digits-cnn --local --recipe int8-static
  edgefarm run model.onnx --device jetson-orin-01 --devices devices.yaml
  edgefarm report latest --html report.html
  edgefarm run mobilenet-v2 --local --recipe fp32 --recipe int8-static --profile
  edgefarm diff latest:fp32 latest:int8-static
  edgefarm devices check devices.yaml
  edgefarm bisect --artifacts exports/ --device jetson-orin-01 --threshold 5%
  edgefarm tune mobilenet-v2-w1 --local --max-drop 1
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefarm", description="Benchmark compressed models on edge devices.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("EDGEFARM_LOG_LEVEL", "WARNING"),
                        type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log records on stderr from this level (default: $EDGEFARM_LOG_LEVEL or WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "fix your input", printed as one line with exit code 2: the Python API's typed
    exceptions (run, report, runs, nightly and resume call the API), and the internal ones the other
    subcommands raise directly."""
    from edgefarm.api.errors import EdgefarmError
    from edgefarm.compressors.errors import CompressorError
    from edgefarm.controller.agents.client import AgentRejectedError, AgentUnreachableError
    from edgefarm.controller.agents.local_agent import LocalAgentError
    from edgefarm.controller.agents.security import SecurityError
    from edgefarm.controller.leases import LeaseError
    from edgefarm.controller.nightly.run import BaselineError
    from edgefarm.controller.planning.input_plan import InputPlanError
    from edgefarm.controller.planning.run_plan import PlanError
    from edgefarm.controller.planning.scheduler import PlanError as MatrixPlanError
    from edgefarm.controller.provision.ca import CaError
    from edgefarm.controller.results.store import StoreError
    from edgefarm.yaml_nodes import ConfigError

    return (EdgefarmError, CliError, CompressorError, ConfigError, AgentUnreachableError, AgentRejectedError,
            LocalAgentError, StoreError, PlanError, LeaseError, BaselineError, MatrixPlanError, InputPlanError,
            CaError, SecurityError)


def configure_logging(level: str) -> None:
    """Library code logs through logging.getLogger(__name__); the console shows the run itself, so
    by default only warnings reach stderr. Other libraries stay at WARNING whatever is asked."""
    if not logging.getLogger().handlers:  # an embedding program (or pytest) that set up logging keeps it
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("edgefarm").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return args.handler(args)
    except user_errors() as exc:
        print(f"edgefarm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupted:
        run_id = getattr(interrupted, "run_id", None)
        resume = f"; finish it with: edgefarm resume {run_id}{_storage_flags(args)}" if run_id else ""
        print(f"edgefarm: interrupted; every result measured so far is stored{resume}", file=sys.stderr)
        return 130


def _storage_flags(args: argparse.Namespace) -> str:
    """The --db the interrupted command used, so the printed resume command works as it stands."""
    db = getattr(args, "db", None)
    if not db:
        return ""
    if ":" in db.partition("://")[2].rpartition("@")[0]:  # user:password@host
        return " --db DB (as given; its password is not repeated here)"
    return f" --db {shlex.quote(db)}"


if __name__ == "__main__":
    sys.exit(main())
