"""edgefarm run: one model, some recipes, one board — the engineer-targeting-one-board path."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from edgefarm.controller.agents.client import AgentUnreachableError
from edgefarm.controller.agents.security import SecurityError
from edgefarm.controller.cli.common import (
    CliError,
    add_measure_flags,
    add_storage_flags,
    cache_dir,
    db_path,
    leases_url,
    measure_settings,
)
from edgefarm.controller.config.targets import resolve_target
from edgefarm.controller.console import RunConsole, fidelity_cell, inputs_cell, summary_table
from edgefarm.controller.execution.single_run import RunExecutor
from edgefarm.controller.leases import LeaseError
from edgefarm.controller.planning.input_plan import parse_shape_args
from edgefarm.controller.planning.job_inputs import AgentTooOldError
from edgefarm.controller.planning.run_plan import AS_IS, PhaseTimes, RunOutcome, RunPlan, Target
from edgefarm.controller.results.frame import results_frame
from edgefarm.controller.results.store import ResultStore

EXAMPLES = """examples:
  edgefarm run digits-cnn --local --recipe fp32 --recipe int8-static
  edgefarm run detector.onnx --device jetson-orin-01 --shape images:1x3x640x640
  edgefarm run vad.onnx --local --inputs frames.npz          # your tensors: one sample or a stack
  edgefarm run detector.onnx --local --shape images:1x3x320x320 --recipe int8-static \\
      --calib-data calib_images/ --preprocess "size=320x320,scale=1/255,layout=nchw,color=rgb"
  edgefarm run model.onnx --device jetson-orin-01 --devices devices.yaml --json
  edgefarm run digits-cnn --local --recipe int8-static --out ./edgefarm-out
  edgefarm run mobilenet_int8.tflite --device rpi5-coral-01 --eval-data eval.npz
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="benchmark a model's variants on one device", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a registry name (digits-cnn), or a path to an .onnx or .tflite file")
    p.add_argument("--recipe", action="append", dest="recipes", metavar="R",
                   help="compression recipe, repeatable (default: fp32; a .tflite runs as is)")
    p.add_argument("--shape", action="append", dest="shapes", default=[], metavar="NAME:DIMS",
                   help="the exact shape of an input with dynamic dims, trtexec's syntax (images:1x3x640x640); "
                        "repeatable. A dynamic dim nothing resolves is refused, never guessed")
    p.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="your input tensors, one array per input name: one sample, or a stack of samples that "
                        "measuring cycles through (default: synthetic data, recorded as such)")
    p.add_argument("--calib-data", type=Path, default=None,
                   help="calibration data for int8-static: an .npz (one array per input, or x), or a folder of "
                        "images with --preprocess")
    p.add_argument("--eval-data", type=Path, default=None,
                   help="evaluation data: an .npz (arrays per input or x, labels y), or a folder of images "
                        "(class subfolders give labels) with --preprocess; accuracy and fidelity")
    p.add_argument("--preprocess", default=None, metavar="SPEC",
                   help='how image folders become tensors, e.g. "size=320x320,scale=1/255,'
                        'mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=nchw,color=rgb"')
    where = p.add_mutually_exclusive_group()
    where.add_argument("--device", help="device name from the devices file")
    where.add_argument("--local", action="store_true", help="start an agent on 127.0.0.1 (the default)")
    p.add_argument("--devices", type=Path, default=None, help="devices file (default: ./devices.yaml)")
    p.add_argument("--out", type=Path, default=None, help="also write report.csv and report.html here")
    p.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    p.add_argument("--leases", default=None,
                   help="lease database URL shared with the farm (default: beside the results database)")
    add_storage_flags(p)
    add_measure_flags(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    default = AS_IS if args.model.endswith(".tflite") else "fp32"
    recipes = tuple(args.recipes or [default])
    target = resolve_target(args.device, args.devices)
    return run_and_report(args.model, recipes, target, args, command=f"run {args.model}")


REFUSALS = (LeaseError, AgentUnreachableError, AgentTooOldError, SecurityError)
CAPS = {"max-iterations": "the --max-iterations cap", "max-seconds": "the max-seconds cap"}


def run_and_report(model: str, recipes: tuple[str, ...], target: Target, args: argparse.Namespace,
                   command: str, times: PhaseTimes | None = None) -> int:
    if not model.endswith(".tflite"):
        check_recipes(recipes)
    plan = RunPlan(model, recipes, target, cache_dir(args), measure_settings(args),
                   data_file(args, "calib_data"), data_file(args, "eval_data"),
                   parse_shape_args(getattr(args, "shapes", [])), getattr(args, "inputs", None))
    ui = RunConsole(quiet=args.json)
    store = ResultStore(db_path(args))
    times = times or PhaseTimes()
    run_id = store.new_run(command)
    leases = leases_url(args) if target.address else None  # the embedded local agent is this run's own
    try:
        with ui.live():
            outcome = RunExecutor(store, ui, times, leases).execute(plan, run_id)
    except REFUSALS:  # nothing was measured: the board was busy, unreachable or too old
        store.finish_run(run_id, "refused")
        raise
    except BaseException:
        store.finish_run(run_id, "failed")
        raise
    store.finish_run(run_id, "done" if not outcome.failures else "partial")
    with times.phase("report"):
        show(store, outcome, args, ui)
    store.close()
    return exit_code(outcome)


def data_file(args: argparse.Namespace, name: str) -> Path | None:
    """--calib-data / --eval-data as an .npz: a folder of images is turned into one with --preprocess."""
    from edgefarm.compressors.images import folder_to_npz, is_image_folder, parse_preprocess

    path, flag = getattr(args, name, None), "--" + name.replace("_", "-")
    if path is None or not is_image_folder(path):
        return path
    spec = getattr(args, "preprocess", None)
    if spec is None:
        raise CliError(f"{flag} {path} is a folder of images: say how to turn them into tensors with --preprocess, "
                       'e.g. --preprocess "size=224x224,scale=1/255,layout=nchw,color=rgb"')
    return folder_to_npz(path, parse_preprocess(spec), cache_dir(args), context=flag)


def check_recipes(recipes: tuple[str, ...]) -> None:
    """Named recipes and one-line chains ('structured-prune(0.5) -> finetune -> int8-static') are
    validated before any training starts; a bad one raises the compressors' own clear error."""
    from edgefarm.compressors.recipes import get_recipe

    for recipe in recipes:
        get_recipe(recipe)


def show(store: ResultStore, outcome: RunOutcome, args: argparse.Namespace, ui: RunConsole) -> None:
    frame = results_frame(store, outcome.run_id)
    rows = frame.to_dict("records") if not frame.empty else []
    if args.json:
        ui.out.print_json(json.dumps({"run_id": outcome.run_id, "results": rows,
                                      "failures": [f.__dict__ for f in outcome.failures]}, default=str))
    else:
        ui.out.print(summary_table([_summary_row(r) for r in rows]))
        ui.out.print(f"run {outcome.run_id}: {outcome.results} result(s) stored in {store.path}")
    for row in rows:
        _warn_if_capped(row, args, ui)
    for f in outcome.failures:
        # One line however long: scripts and CI logs grep for it, and wrapping would split the fix from the fault.
        ui.err.print(f"[red]edgefarm: {f.variant} on {f.device} failed ({f.kind}): {f.message}[/red]",
                     soft_wrap=True, markup=True, highlight=False)
    if args.out is not None and rows:
        write_reports(frame, args.out, ui, title=f"edgefarm run {outcome.run_id}")


def _warn_if_capped(row: dict, args: argparse.Namespace, ui: RunConsole) -> None:
    """A cap that ended measuring before --min-seconds is never silent."""
    if row.get("stopped_by") not in CAPS or row["measure_seconds"] >= args.min_seconds:
        return
    where, cap = f"{row['variant']} on {row['device']}", CAPS[row["stopped_by"]]
    ui.err.print(f"edgefarm: warning: {where}: measuring stopped at {cap} after {row['measure_seconds']:.1f} s, "
                 f"short of --min-seconds {args.min_seconds:g}; raise the cap for the full duration",
                 soft_wrap=True, markup=False, highlight=False)


def write_reports(frame, out: Path, ui: RunConsole, title: str) -> tuple[Path, Path]:
    from edgefarm.controller.reports import write_csv, write_html

    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = write_csv(frame, out / "report.csv"), write_html(frame, out / "report.html", title)
    ui.out.print(f"CSV report:  {csv_path.resolve()}\nHTML report: {html_path.resolve()}")
    return csv_path, html_path


def _summary_row(row: dict) -> dict:
    acc, dev_acc, energy = row.get("accuracy"), row.get("device_accuracy"), row.get("energy_mj_per_inference")
    return {**row, "size_kib": row["size_bytes"] / 1024, "fidelity": fidelity_cell(row), "inputs": inputs_cell(row),
            "accuracy_pct": acc * 100 if isinstance(acc, float) and not math.isnan(acc) else None,
            "device_accuracy_pct": dev_acc * 100 if isinstance(dev_acc, float) and not math.isnan(dev_acc) else None,
            "energy": energy}


def exit_code(outcome: RunOutcome) -> int:
    """2 when a job was refused as bad input (the user can fix it), 1 for other failures, else 0."""
    if any(f.kind == "bad-input" for f in outcome.failures):
        return 2
    return 1 if outcome.failures else 0
