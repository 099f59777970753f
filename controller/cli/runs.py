"""edgefarm runs: the stored runs, newest first (reads the store, never measures): Farm.stored_runs."""
from __future__ import annotations

import argparse
import json

from edgefarm.controller.cli.common import add_storage_flags, farm

EXAMPLES = """examples:
  edgefarm runs
  edgefarm runs --limit 5 --json
  edgefarm report $(edgefarm runs --json | jq -r '.[0].id') --html report.html
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the stored runs, newest first", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON on stdout")
    add_storage_flags(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    listed = farm(args)
    runs = listed.stored_runs(limit=max(args.limit, 1))
    if args.json:
        print(json.dumps([run.__dict__ for run in runs]))
        return 0
    if not runs:
        print(f"no runs in {listed.location}")
    for run in runs:
        verdict = f", verdict {run.verdict}" if run.verdict else ""
        resumable = run.status in ("abandoned", "interrupted") and run.kind != "run"   # a farm run keeps its plan
        hint = f"  (finish it: edgefarm resume {run.id})" if resumable else ""
        print(f"{run.id}  {run.kind:<8} {run.status:<11} {run.results} result(s), {run.failures} failed{verdict}  "
              f"{run.command}{hint}")
    return 0
