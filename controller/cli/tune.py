"""edgefarm tune: the fastest variant of a model on each board within an accuracy budget, searched by
measuring. Parses the flags and calls the Python API (edgefarm.Farm.tune); prints what it returns."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.table import Table

from edgefarm.api.tuning import Tuning
from edgefarm.controller.cli.common import CliError, add_storage_flags, farm
from edgefarm.controller.console import RunConsole
from edgefarm.controller.planning.run_plan import MeasureSettings

EXAMPLES = """examples:
  edgefarm tune mobilenet-v2-w1 --local --max-drop 1
  edgefarm tune model.onnx --device jetson-orin-01 --calib-data calib.npz --eval-data eval.npz
  edgefarm tune mobilenet-v2 --pool x86 --objective size --recipes int8-static mixed-int8 --max-jobs 12
  edgefarm tune digits-cnn --local --recipes fp32 int8-static 'structured-prune(0.5) -> finetune -> int8-static'

Candidates are the recipes (default: every single-step recipe, with int8-static's calibration methods
and activation types) crossed with the board's backend routes and thread counts. Budget-breakers are
dropped on this machine before any board time; the rest are ranked by a brief measurement and the
leaders measured fully. A hardware-aware mixed-precision variant keeps in fp32 the layers whose int8
kernel this board runs slower, with each layer's reason. Every measurement is a stored result:
edgefarm report RUN_ID and edgefarm diff RUN:VARIANT RUN:VARIANT read a tune as any run.

exit codes:
  0  a recommendation within the budget
  1  no candidate meets the budget (the closest are shown)
  2  bad input, refused before measuring (unknown recipe, --objective energy without a power sensor, ...)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="search the fastest variant within an accuracy budget, on the board",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a registry name (mobilenet-v2-w1) or a path to an .onnx file")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--device", help="a device of the devices file")
    where.add_argument("--pool", help="a pool of the devices file: one front and card per board kind")
    where.add_argument("--local", action="store_true", help="the embedded agent on 127.0.0.1 (the default)")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="accuracy (or top-1 agreement) points the variant may lose against fp32 (default 1)")
    p.add_argument("--objective", choices=("latency", "energy", "size"), default="latency",
                   help="what to minimise within the budget (default latency: p50 on the board)")
    p.add_argument("--recipes", nargs="+", default=None, metavar="R", help="recipes or one-line chains to try")
    p.add_argument("--backends", nargs="+", default=None, metavar="B", help="backend routes to try (default: all)")
    p.add_argument("--max-jobs", type=int, default=None, metavar="N", help="at most N board measurements")
    p.add_argument("--no-hwmp", action="store_true", help="skip the hardware-aware mixed-precision variant")
    p.add_argument("--shape", action="append", dest="shapes", default=[], metavar="NAME:DIMS",
                   help="the exact shape of an input with dynamic dims, as `edgefarm run --shape`; repeatable")
    p.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz", help="your input tensors")
    p.add_argument("--calib-data", type=Path, default=None, help="calibration .npz for the int8 recipes")
    p.add_argument("--eval-data", type=Path, default=None,
                   help="evaluation .npz (inputs x, labels y); without labels the budget is on fidelity")
    p.add_argument("--min-seconds", type=float, default=1.5, help="the full measurement's minimum time")
    p.add_argument("--devices", type=Path, default=None, help="devices file (default: ./devices.yaml)")
    p.add_argument("--leases", default=None, help="lease database URL shared with the farm")
    p.add_argument("--json", action="store_true", help="print the front, cards and decisions as JSON")
    p.add_argument("--out", type=Path, default=None, help="also write tune.html and tune.json here")
    add_storage_flags(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    if args.max_jobs is not None and args.max_jobs < 1:
        raise CliError(f"--max-jobs {args.max_jobs} must be >= 1")
    found = farm(args, args.devices).tune(
        args.model, device=args.device or args.pool, max_drop=args.max_drop, objective=args.objective,
        recipes=args.recipes, backends=args.backends, max_jobs=args.max_jobs, shapes=args.shapes,
        inputs=args.inputs, calib_data=args.calib_data, eval_data=args.eval_data,
        measure=MeasureSettings(warmup_seconds=0.3, min_seconds=args.min_seconds), hwmp=not args.no_hwmp,
        progress=not args.json)
    if args.out is not None:
        found.write_html(args.out / "tune.html")
        (args.out / "tune.json").write_text(json.dumps(found.to_json(), default=str, indent=2) + "\n")
    show(found, args.json, RunConsole(quiet=args.json))
    return found.exit_code


def show(found: Tuning, as_json: bool, ui: RunConsole) -> None:
    if as_json:
        ui.out.print_json(json.dumps(found.to_json(), default=str))
    else:
        ui.out.print(front_table(found))
        for card in found.cards:
            ui.out.print(card_table(card))
        if not found.cards:
            ui.out.print(front_table(found, found.closest, "closest candidates (none within the budget)"))
        if not found.decisions.empty:
            ui.out.print(decisions_table(found))
        ui.out.print(f"tune {found.run_id}: {found.jobs} board job(s); {'; '.join(found.stopped)}; stored in "
                     f"{found.db}", soft_wrap=True, markup=False)
    line = f"edgefarm: tune: {found.message}"
    if found.exit_code == 0 and not as_json:
        ui.out.print(line, soft_wrap=True, markup=False, highlight=False)
    else:  # on stderr, so --json keeps stdout machine-readable
        print(line, file=sys.stderr)


def front_table(found: Tuning, rows=None, title: str = "measured Pareto front (latency vs quality vs size)") -> Table:
    table = Table(title=title)
    for column in ("device", "candidate", "p50 ms", "p99 ms", "quality", "drop", "size MB"):
        table.add_column(column)
    for r in (found.front if rows is None else rows).itertuples():
        table.add_row(r.device, r.candidate, f"{r.latency_p50_ms:.3f}", f"{r.latency_p99_ms:.3f}",
                      f"{r.quality:.4f}", f"{r.drop_points:.2f}", f"{r.size_bytes / 1e6:.2f}")
    return table


def card_table(card) -> Table:
    table = Table(title=f"deployment card: {card.device}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in card.lines():
        table.add_row(name, str(value))
    return table


def decisions_table(found: Tuning) -> Table:
    table = Table(title="hardware-aware mixed precision: per-layer decisions")
    for column in ("device", "layer", "int8 speed-up", "sensitivity", "int8", "reason"):
        table.add_column(column)
    for d in found.decisions.itertuples():
        speed = "" if d.speedup is None or d.speedup != d.speedup else f"{d.speedup:.2f}x"
        table.add_row(d.device, d.layer, speed, f"{d.sensitivity:.2e}", "yes" if d.quantized else "no", d.reason)
    return table
