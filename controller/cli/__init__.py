"""The edgefarm command line: one module per subcommand."""
from __future__ import annotations

import argparse
import sys

from controller import __version__
from controller.cli import ca, demo, devices, nightly, provision, report, run, runs
from controller.cli.common import CliError

SUBCOMMANDS = (demo, run, runs, report, devices, nightly, provision, ca)
EXAMPLES = """examples:
  edgefarm demo                                   # digits-cnn × 4 recipes on a local agent
  edgefarm run digits-cnn --local --recipe int8-static
  edgefarm run model.onnx --device jetson-orin-01 --devices devices.yaml
  edgefarm report latest --html report.html
  edgefarm devices check devices.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefarm", description="Benchmark compressed models on edge devices.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "fix your input", printed as one line with exit code 2."""
    from compressors.errors import CompressorError
    from controller.ca import CaError
    from controller.client import AgentRejectedError, AgentUnreachableError
    from controller.input_plan import InputPlanError
    from controller.leases import LeaseError
    from controller.local_agent import LocalAgentError
    from controller.nightly import BaselineError
    from controller.pipeline import PlanError
    from controller.scheduler import PlanError as MatrixPlanError
    from controller.store import StoreError
    from controller.yaml_nodes import ConfigError

    return (CliError, CompressorError, ConfigError, AgentUnreachableError, AgentRejectedError,
            LocalAgentError, StoreError, PlanError, LeaseError, BaselineError, MatrixPlanError, InputPlanError,
            CaError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except user_errors() as exc:
        print(f"edgefarm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgefarm: interrupted; every result measured so far is stored", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
