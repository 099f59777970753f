"""edgefarm demo: digits-cnn × four recipes on a local agent, with CSV and HTML reports."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgefarm.controller.cli.common import add_measure_flags, add_storage_flags
from edgefarm.controller.cli.run import run_and_report

DEMO_MODEL = "digits-cnn"
DEMO_RECIPES = ("fp32", "fp16", "int8-dynamic", "int8-static")
EXAMPLES = """examples:
  edgefarm demo
  edgefarm demo --out /tmp/edgefarm-demo --min-seconds 1
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the bundled model through four recipes on a local agent",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("edgefarm-out"), help="report directory (default: ./edgefarm-out)")
    p.add_argument("--timings-json", type=Path, default=None, help="write per-phase wall times here (benchmarks)")
    add_storage_flags(p)
    add_measure_flags(p)
    p.set_defaults(handler=execute, json=False)


def execute(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}
    code = run_and_report(args, DEMO_MODEL, DEMO_RECIPES, None, command="demo", timings=timings)
    if args.timings_json:
        args.timings_json.write_text(json.dumps(timings, indent=2))
    return code
