"""edgefarm report: CSV and HTML for a stored run (reads the store, never measures): Farm.report."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefarm.controller.cli.common import add_storage_flags, farm

EXAMPLES = """examples:
  edgefarm report latest --html report.html
  edgefarm report 20261124-221500-ab12cd --csv out.csv --html out.html
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write CSV/HTML reports for a stored run", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_id", help="run id as printed by 'edgefarm run', or 'latest'")
    p.add_argument("--csv", type=Path, default=None, help="CSV path (default: report-RUN_ID.csv)")
    p.add_argument("--html", type=Path, default=None, help="HTML path (default: report-RUN_ID.html)")
    add_storage_flags(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    report = farm(args).report(args.run_id, csv=args.csv or True, html=args.html or True)
    print(f"CSV report:  {report.csv.resolve()}\nHTML report: {report.html.resolve()}")
    return 0
