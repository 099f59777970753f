"""edgefarm nightly / edgefarm resume: the matrix across the farm, with regression verdicts."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefarm.controller.cli.common import add_storage_flags, cache_dir, db_path, leases_url
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm_run import FarmRun, FarmRunConfig
from edgefarm.controller.nightly.run import run_nightly
from edgefarm.controller.results.store import ResultStore

EXAMPLES = """examples:
  edgefarm nightly --matrix nightly.yaml --baseline last-good --out nightly-out
  edgefarm nightly --matrix nightly.yaml --devices farm.yaml --leases postgresql://farm@db/edgefarm
  edgefarm resume 20261124-020000-ab12cd
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nightly", help="run the matrix and fail only on a confirmed regression", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matrix", type=Path, required=True, help="the matrix file (docs/nightly.md)")
    p.add_argument("--baseline", default="last-good", help="'last-good' (default) or a run id")
    p.add_argument("--out", type=Path, default=Path("nightly-out"), help="report.csv, report.html, junit.xml")
    _farm_flags(p)
    p.set_defaults(handler=execute_nightly)
    r = sub.add_parser("resume", help="finish an interrupted farm run without redoing completed jobs",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("run_id")
    add_storage_flags(r)
    r.set_defaults(handler=execute_resume)


def _farm_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=Path, default=Path("devices.yaml"), help="devices file")
    p.add_argument("--leases", default=None,
                   help="lease database URL (sqlite:///… or postgresql://…; default: beside the results DB)")
    add_storage_flags(p)


def execute_nightly(args: argparse.Namespace) -> int:
    config = FarmRunConfig(str(args.matrix.resolve()), str(args.devices.resolve()), leases_url(args),
                           str(cache_dir(args).resolve()))
    store, ui = ResultStore(db_path(args)), RunConsole()
    report = run_nightly(config, store, ui, args.baseline, args.out)
    for v in report.verdicts:
        ui.out.print(f"{v.outcome.value:>12}  {v.key.label()}  {v.reason}")
    ui.out.print(f"nightly {report.run_id} against {report.baseline or 'no baseline'}: "
                 f"{'REGRESSION' if report.exit_code else 'ok'}; reports in {args.out.resolve()}")
    return report.exit_code


def execute_resume(args: argparse.Namespace) -> int:
    store, ui = ResultStore(db_path(args)), RunConsole()
    config = FarmRunConfig(**store.run_plan(args.run_id))
    result = FarmRun(config, store, ui).resume(args.run_id)
    ui.out.print(f"run {args.run_id}: {result.outcome.done} job(s) finished now, "
                 f"{len(result.outcome.failed)} failed")
    return 1 if result.outcome.failed else 0
