"""edgefarm report: CSV and HTML for a stored run (reads the store, never measures)."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefarm.controller.cli.common import CliError, add_storage_flags, db_path
from edgefarm.controller.results.frame import results_frame
from edgefarm.controller.results.store import ResultStore

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
    from edgefarm.controller.reports import write_csv, write_html

    store = ResultStore(db_path(args))
    run_id = store.latest_run() if args.run_id == "latest" else args.run_id
    if run_id is None or not store.run_exists(run_id):
        raise CliError(f"no run {args.run_id!r} in {store.path}; list runs with 'edgefarm runs' "
                       "or pass --db for another database")
    frame = results_frame(store, run_id)
    if frame.empty:
        raise CliError(f"run {run_id} has no stored results (every job failed or it was interrupted early)")
    csv_path = write_csv(frame, args.csv or Path(f"report-{run_id}.csv"))
    html_path = write_html(frame, args.html or Path(f"report-{run_id}.html"), title=f"edgefarm run {run_id}")
    print(f"CSV report:  {csv_path.resolve()}\nHTML report: {html_path.resolve()}")
    return 0
