"""edgefarm run: one model, some recipes, one board — the engineer-targeting-one-board path.
Parses the flags and calls the Python API (edgefarm.Farm.run); prints what it returns."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from edgefarm.api import Run
from edgefarm.controller.cli.common import add_measure_flags, add_storage_flags, farm, measure_settings
from edgefarm.controller.console import RunConsole, fidelity_cell, inputs_cell, summary_table

EXAMPLES = """examples:
  edgefarm run digits-cnn --local --recipe fp32 --recipe int8-static
  edgefarm run detector.onnx --device jetson-orin-01 --shape images:1x3x640x640
  edgefarm run vad.onnx --local --inputs frames.npz          # your tensors: one sample or a stack
  edgefarm run detector.onnx --local --shape images:1x3x320x320 --recipe int8-static \\
      --calib-data calib_images/ --preprocess "size=320x320,scale=1/255,layout=nchw,color=rgb"
  edgefarm run model.onnx --device jetson-orin-01 --devices devices.yaml --json
  edgefarm run digits-cnn --local --recipe int8-static --out ./edgefarm-out
  edgefarm run mobilenet_int8.tflite --device rpi5-coral-01 --eval-data eval.npz
  edgefarm run mobilenet-v2 --local --recipe et-fp32 --recipe et-int8 --recipe ov-int8 --profile
  edgefarm run model.onnx --device nuc-01 --backend openvino      # ONNX on OpenVINO, not ONNX Runtime
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="benchmark a model's variants on one device", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a registry name (digits-cnn), or a path to an .onnx file, or a prebuilt "
                                 ".tflite, .pte (ExecuTorch) or .xml (OpenVINO IR, its .bin beside it)")
    p.add_argument("--recipe", action="append", dest="recipes", metavar="R",
                   help="compression recipe, repeatable (default: fp32; a prebuilt model runs as is)")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="run every variant on this backend (onnxruntime, tensorrt, openvino, litert, executorch); "
                        "default: the board's preferred backend for each variant's format")
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
    return run_and_report(args, args.model, args.recipes, args.device, command=f"run {args.model}")


def run_and_report(args: argparse.Namespace, model: str, recipes: list[str] | tuple[str, ...] | None,
                   device: str | None, command: str, timings: dict[str, float] | None = None) -> int:
    """The API's Farm.run with the flags as typed arguments; then the summary, warnings and failures.
    `edgefarm demo` comes here too, without the flags for the user's own data."""
    run = farm(args, getattr(args, "devices", None)).run(
        model, device=device, recipes=recipes, shapes=getattr(args, "shapes", None),
        inputs=getattr(args, "inputs", None), calib_data=getattr(args, "calib_data", None),
        eval_data=getattr(args, "eval_data", None), preprocess=getattr(args, "preprocess", None),
        measure=measure_settings(args), progress=not args.json, label=command,
        backend=getattr(args, "backend", None))
    ui = RunConsole(quiet=args.json)
    start = time.perf_counter()
    show(run, args, ui)
    if timings is not None:
        timings.update(run.phase_seconds, report=time.perf_counter() - start)
    return run.exit_code


def show(run: Run, args: argparse.Namespace, ui: RunConsole) -> None:
    rows = run.frame.to_dict("records") if not run.frame.empty else []
    if args.json:
        ui.out.print_json(json.dumps({"run_id": run.id, "results": rows,
                                      "failures": [f.__dict__ for f in run.failures]}, default=str))
    else:
        ui.out.print(summary_table([_summary_row(r) for r in rows]))
        ui.out.print(f"run {run.id}: {len(run.results)} result(s) stored in {run.db}")
    for warning in run.warnings:
        ui.err.print(f"edgefarm: warning: {warning}", soft_wrap=True, markup=False, highlight=False)
    for f in run.failures:
        # One line however long: scripts and CI logs grep for it, and wrapping would split the fix from the fault.
        ui.err.print(f"[red]edgefarm: {f.variant} on {f.device} failed ({f.kind}): {f.message}[/red]",
                     soft_wrap=True, markup=True, highlight=False)
    if args.out is not None and rows:
        report = farm(args).report(run.id, csv=args.out / "report.csv", html=args.out / "report.html")
        ui.out.print(f"CSV report:  {report.csv.resolve()}\nHTML report: {report.html.resolve()}")


def _summary_row(row: dict) -> dict:
    acc, dev_acc, energy = row.get("accuracy"), row.get("device_accuracy"), row.get("energy_mj_per_inference")
    return {**row, "size_kib": row["size_bytes"] / 1024, "fidelity": fidelity_cell(row), "inputs": inputs_cell(row),
            "accuracy_pct": acc * 100 if isinstance(acc, float) and not math.isnan(acc) else None,
            "device_accuracy_pct": dev_acc * 100 if isinstance(dev_acc, float) and not math.isnan(dev_acc) else None,
            "energy": energy}
