"""edgefarm bisect: which artifact of an ordered sequence first regressed against the good end.
Parses the flags and calls the Python API (edgefarm.Farm.bisect); prints what it returns."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from rich.table import Table

from edgefarm.api.bisection import Bisection
from edgefarm.controller.cli.common import CliError, add_measure_flags, add_storage_flags, farm, measure_settings
from edgefarm.controller.console import RunConsole

EXAMPLES = """examples:
  edgefarm bisect --artifacts exports/ --device jetson-orin-01          # .onnx/.tflite files sorted by name
  edgefarm bisect --artifacts a.onnx,b.onnx,c.onnx,d.onnx --local --threshold 10%
  edgefarm bisect --artifacts ckpts/ --device orin-pool --good ckpt-03.onnx --bad ckpt-19.onnx --json
  edgefarm bisect --artifacts exports/ --local --shape images:1x3x640x640   # dynamic dims: say the shape

Each step measures one artifact against the good end on the board and answers different, same or
measure more (both again, runs pooled, up to --max-rounds); a sequence of n artifacts takes the two
ends plus about log2(n) steps when every verdict is clear. --device may name a pool of the devices
file: a board lost mid-bisect hands over to the next. Every job is stored as a run of kind bisect,
with the search itself (edgefarm runs; edgefarm report RUN_ID).

exit codes:
  0  the first regressed artifact was found
  2  bad input: refused before measuring (artifacts of different models or input shapes, a dynamic
     dim without --shape, ...), or the ends do not bracket a regression (the good end is not good,
     or the bad end is not bad), said after measuring both
  3  no answer: still too noisy after --max-rounds, or the board was lost with no other to go on
     with (the partial search is stored)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bisect", help="find the first artifact of a sequence that regressed", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", required=True, metavar="LIST_OR_DIR",
                   help="a directory (its .onnx/.tflite files sorted by name: zero-pad numbers) or a comma list "
                        "of files, oldest first: versions of one model")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--device", help="a device or a pool of the devices file")
    where.add_argument("--local", action="store_true", help="the embedded agent on 127.0.0.1 (the default)")
    p.add_argument("--good", default=None, help="the good end: a file name, path or position (default: the first)")
    p.add_argument("--bad", default=None, help="the bad end: a file name, path or position (default: the last)")
    p.add_argument("--threshold", type=threshold, default=0.05, metavar="PCT",
                   help="the slowdown of the median that counts as a regression: 5%% or 0.05 (default 5%%)")
    p.add_argument("--max-rounds", type=int, default=3, metavar="N",
                   help="runs of each side a noisy step may pool before it answers unknown (default 3)")
    p.add_argument("--shape", action="append", dest="shapes", default=[], metavar="NAME:DIMS",
                   help="the exact shape of an input with dynamic dims, as `edgefarm run --shape`; repeatable")
    p.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="your input tensors, as `edgefarm run --inputs`")
    p.add_argument("--devices", type=Path, default=None, help="devices file (default: ./devices.yaml)")
    p.add_argument("--leases", default=None, help="lease database URL shared with the farm")
    p.add_argument("--json", action="store_true", help="print the search as JSON on stdout")
    add_storage_flags(p)
    add_measure_flags(p)
    p.set_defaults(handler=execute)


def threshold(text: str) -> float:
    """'5%' or '0.05'; argparse turns the ValueError into a one-line usage error."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < value < 1 or math.isnan(value):
        raise ValueError(text)
    return value


def execute(args: argparse.Namespace) -> int:
    if args.max_rounds < 1:
        raise CliError(f"--max-rounds {args.max_rounds} must be >= 1")
    found = farm(args, args.devices).bisect(
        args.artifacts, device=args.device, good=args.good, bad=args.bad, threshold=args.threshold,
        max_rounds=args.max_rounds, shapes=args.shapes, inputs=args.inputs, measure=measure_settings(args),
        progress=not args.json)
    show(found, args.json, RunConsole(quiet=args.json))
    return found.exit_code


def show(found: Bisection, as_json: bool, ui: RunConsole) -> None:
    if as_json:
        ui.out.print_json(json.dumps(found.to_json(), default=str))
    else:
        ui.out.print(steps_table(found))
        ui.out.print(f"bisect {found.run_id}: {found.jobs} job(s) measured, stored in {found.db}", soft_wrap=True)
    line = f"edgefarm: bisect {found.status}: {found.message}"
    if found.exit_code == 0 and not as_json:
        ui.out.print(line, soft_wrap=True, markup=False, highlight=False)
    else:  # on stderr, so --json keeps stdout machine-readable; one line however long: scripts grep for it
        print(line, file=sys.stderr)


def steps_table(found: Bisection) -> Table:
    table = Table(title=f"bisect of {len(found.artifacts)} artifacts: {found.good} (good) .. {found.bad} (bad), "
                        f"threshold {found.threshold:.0%}")
    for column in ("#", "artifact", "against good end", "verdict", "runs", "board", "why"):
        table.add_column(column)
    for number, s in enumerate(found.steps, 1):
        if s.kind == "board-lost":
            table.add_row(str(number), "", "", "board lost", "", s.board, s.reason)
            continue
        ratio = "" if s.ratio != s.ratio else f"{s.ratio - 1:+.1%}"
        table.add_row(str(number), f"{s.index}: {s.artifact}" + (" (bad end)" if s.kind == "ends" else ""),
                      ratio, s.verdict, str(s.rounds), s.board, s.reason)
    return table
