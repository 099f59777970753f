"""edgefarm nightly / edgefarm resume: the matrix across the farm, with regression verdicts.
Parses the flags and calls the Python API (edgefarm.Farm.nightly / Farm.resume); prints what it returns."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefarm.api import NightlyOutcome
from edgefarm.api.farm import LEASE_WAIT_S
from edgefarm.controller.cli.common import add_storage_flags, farm
from edgefarm.controller.console import RunConsole

EXAMPLES = """examples:
  edgefarm nightly --matrix nightly.yaml --baseline last-good --out nightly-out
  edgefarm nightly --matrix nightly.yaml --devices farm.yaml --db postgresql://farm@db/edgefarm
  edgefarm resume 20261124-020000-ab12cd

exit codes (nightly, and resume of a night):
  0  every planned benchmark has a verdict and none regressed (an improvement its re-run did not
     reproduce is "unconfirmed": still 0, but that night never becomes last-good)
  1  a confirmed regression, or a slowdown over the history's nights that tonight confirmed
     (a change point: docs/nightly.md)
  2  bad input or configuration
  3  the night could not measure everything it planned (unreachable or quarantined boards,
     failed jobs, nothing to run); such a night never becomes the last-good baseline
"""
STATUS = {0: "ok", 1: "REGRESSION", 3: "INCOMPLETE: not everything planned was measured"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nightly", help="run the matrix and fail only on a confirmed regression", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matrix", type=Path, required=True, help="the matrix file (docs/nightly.md)")
    p.add_argument("--baseline", default="last-good", help="'last-good' (default) or a run id")
    p.add_argument("--out", type=Path, default=Path("nightly-out"), help="report.csv, report.html, junit.xml")
    p.add_argument("--lease-wait", type=float, default=LEASE_WAIT_S, metavar="SECONDS",
                   help=f"once nothing else runs, how long a job waits for boards someone else holds before "
                        f"it counts as not measured (exit 3; default {LEASE_WAIT_S:g})")
    _farm_flags(p)
    p.set_defaults(handler=execute_nightly)
    r = sub.add_parser("resume", help="finish an interrupted farm run without redoing completed jobs",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("run_id")
    r.add_argument("--out", type=Path, default=Path("nightly-out"),
                   help="a resumed night's report.csv, report.html, junit.xml (as nightly --out)")
    add_storage_flags(r)
    r.set_defaults(handler=execute_resume)


def _farm_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=Path, default=Path("devices.yaml"), help="devices file")
    p.add_argument("--leases", default=None,
                   help="lease database URL (sqlite:///… or postgresql://…; default: beside the results DB)")
    add_storage_flags(p)


def execute_nightly(args: argparse.Namespace) -> int:
    night = farm(args, args.devices).nightly(args.matrix, baseline=args.baseline, out=args.out,
                                             lease_wait=args.lease_wait)
    return show_night(night, RunConsole(), args.out)


def show_night(night: NightlyOutcome, ui: RunConsole, out: Path) -> int:
    for v in night.verdicts:
        ui.out.print(f"{v.outcome.value:>12}  {v.key.label()}  {v.reason}", soft_wrap=True)
    for u in night.unmeasured:
        ui.out.print(f"{'not measured':>12}  {u.label()}  {u.kind}: {u.reason}", soft_wrap=True)
    ui.out.print(f"nightly {night.run_id} against {night.baseline or 'no baseline'}: {night.summary()}: "
                 f"{STATUS[night.exit_code]}; reports in {out.resolve()}", soft_wrap=True)
    return night.exit_code


def execute_resume(args: argparse.Namespace) -> int:
    resumed = farm(args).resume(args.run_id, out=args.out)
    if isinstance(resumed, NightlyOutcome):
        return show_night(resumed, RunConsole(), args.out)
    RunConsole().out.print(f"run {args.run_id}: {resumed.finished} job(s) finished now, {resumed.failed} failed")
    return resumed.exit_code
