"""edgefarm diff: two results' per-layer tables lined up (reads the store, never measures): Farm.diff."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgefarm.controller.cli.common import add_storage_flags, farm

EXAMPLES = """examples:
  edgefarm run mobilenet-v2 --local --recipe fp32 --recipe int8-static --profile
  edgefarm diff latest:fp32 latest:int8-static
  edgefarm diff RUN_A RUN_B --device orin-01 --csv diff.csv --html diff.html
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="align two results' per-layer profiles and show where the time went",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="RUN_OR_RESULT_A", help="a result (job id), RUN:VARIANT, or a run with one result")
    p.add_argument("b", metavar="RUN_OR_RESULT_B")
    p.add_argument("--device", default=None, help="the device whose results to compare")
    p.add_argument("--csv", type=Path, default=None, help="write the aligned groups as CSV")
    p.add_argument("--html", type=Path, default=None, help="write a self-contained HTML page of the diff")
    p.add_argument("--json", action="store_true", help="print groups and totals as JSON on stdout")
    add_storage_flags(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    diff = farm(args).diff(args.a, args.b, device=args.device, csv=args.csv, html=args.html)
    print(json.dumps(diff.as_json()) if args.json else diff.text())
    return 0
