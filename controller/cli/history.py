"""edgefarm history: change points over the stored nights of each benchmark (reads the store): Farm.history."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgefarm.controller.cli.common import add_storage_flags, farm

EXAMPLES = """examples:
  edgefarm history
  edgefarm history --model detector.onnx --device jetson-orin-01 --since 2026-11-01
  edgefarm history --html history.html --json
A series is one (model, recipe, device, backend, input shapes); a change point is a night where its
median stepped to a new level and stayed (confirmed after 3 nights at it).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="change points over the stored nights of each benchmark", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="only this model (as stored: a file name or registry name)")
    p.add_argument("--device", default=None, help="only this device")
    p.add_argument("--since", default=None, metavar="DATE", help="only nights from this date on (2026-11-01)")
    p.add_argument("--json", action="store_true", help="print the change points as JSON on stdout")
    p.add_argument("--html", type=Path, default=None, help="also write the trend with the change points marked")
    add_storage_flags(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    history = farm(args).history(model=args.model, device=args.device, since=args.since, html=args.html)
    if args.json:
        print(json.dumps([{**point.__dict__, "step": point.step} for point in history.change_points]))
        return 0
    nights, series = history.frame["run_id"].nunique(), history.frame["series"].nunique()
    print(f"{nights} night(s), {series} series, {len(history.change_points)} change point(s)")
    for point in history.change_points:
        print(f"  {point.describe()}")
    if args.html:
        print(f"HTML: {args.html.resolve()}")
    return 0
