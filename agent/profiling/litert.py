"""LiteRT's per-node placement, and per-op time where the board has a benchmark_model binary.

The Python interpreter cannot time ops, so this pass records placement: `_get_ops_details()` lists the
model's nodes and then one DELEGATE node per delegated partition; walking each DELEGATE node's outputs
back to its inputs gives the nodes it replaced. Per-op time comes only from benchmark_model
(--enable_op_profiling=true --op_profiling_output_mode=proto) when devices.yaml names one; otherwise
each row says its time is not available, never a guess.
"""
from __future__ import annotations

import logging
import subprocess
import tempfile
from typing import Any

import numpy as np

from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.profiling.families import is_glue, op_family
from edgefarm.agent.profiling.litert_ops import op_times_from_proto
from edgefarm.agent.profiling.records import LayerProfile, LayerRow
from edgefarm.agent.profiling.settings import ProfileSettings

log = logging.getLogger(__name__)
PROFILER = "litert placement (interpreter _get_ops_details)"
# What the engine's provider means as a placement.
_PLACEMENTS = {"xnnpack": "XNNPACK", "edgetpu": "EdgeTPU", "gpu": "GPU", "builtin": "CPU"}
CPU_KERNELS = "CPU"
NO_TIMING = ("per-op time not available: the LiteRT Python API has no op profiler; set a benchmark_model "
             "binary in devices.yaml (backend_options: litert: benchmark_model: /path) for per-op time")
BENCHMARK_TIMEOUT_S = 300


def profile(engine: Any, artifact_path: str, options: BackendOptions, feeds: dict[str, np.ndarray],
            settings: ProfileSettings) -> LayerProfile:
    interpreter = engine.interpreter
    ops_details = getattr(interpreter, "_get_ops_details", None)
    if ops_details is None:
        return LayerProfile.not_available("this LiteRT runtime has no _get_ops_details() to read placement from")
    rows = placement_rows(ops_details(), _tensor_details(interpreter), _PLACEMENTS.get(engine.provider, "CPU"))
    if not settings.benchmark_model_path:
        return LayerProfile(available=True, profiler=PROFILER, layers=tuple(rows), timing_unavailable_reason=NO_TIMING,
                            placement_source="interpreter._get_ops_details(): DELEGATE nodes walked back to the "
                                             "nodes they replaced")
    times = _benchmark_model_times(settings, artifact_path, options)
    return timed_profile(rows, times, settings)


def _tensor_details(interpreter: Any) -> dict[int, dict[str, Any]]:
    return {int(t["index"]): t for t in interpreter.get_tensor_details()}


def placement_rows(ops: list[dict[str, Any]], tensors: dict[int, dict[str, Any]], delegate: str) -> list[LayerRow]:
    """One row per model node (DELEGATE nodes left out), placed on the delegate that replaced it."""
    nodes = [op for op in ops if op.get("op_name") != "DELEGATE"]
    taken = _delegated(nodes, [op for op in ops if op.get("op_name") == "DELEGATE"])
    return [_row(op, tensors, delegate if int(op["index"]) in taken else CPU_KERNELS) for op in nodes]


def _delegated(nodes: list[dict[str, Any]], delegates: list[dict[str, Any]]) -> set[int]:
    producer = {int(t): int(op["index"]) for op in nodes for t in op["outputs"]}
    inputs = {int(op["index"]): [int(t) for t in op["inputs"] if int(t) >= 0] for op in nodes}
    taken: set[int] = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        todo = [int(t) for t in delegate["outputs"]]
        while todo:
            node = producer.get(todo.pop())
            if node is None or node in taken:
                continue
            taken.add(node)
            todo.extend(t for t in inputs[node] if t not in boundary)
    return taken


def _row(op: dict[str, Any], tensors: dict[int, dict[str, Any]], placement: str) -> LayerRow:
    outputs = [tensors[int(t)] for t in op["outputs"] if int(t) in tensors]
    family = op_family(str(op["op_name"]))
    return LayerRow(name=f"{op['op_name']}:{op['index']}", op_type=str(op["op_name"]), op_family=family,
                    placement=placement, precision=_precision(outputs), is_glue=is_glue(family),
                    output_shapes=tuple("x".join(str(int(d)) for d in t["shape"]) or "scalar" for t in outputs),
                    source_nodes=tuple(str(t["name"]) for t in outputs))


def _precision(outputs: list[dict[str, Any]]) -> str:
    if not outputs:
        return ""
    name = np.dtype(outputs[0]["dtype"]).name
    return {"float32": "fp32", "float16": "fp16"}.get(name, name)


def _benchmark_model_times(settings: ProfileSettings, artifact_path: str, options: BackendOptions) -> dict[int, Any]:
    with tempfile.NamedTemporaryFile(suffix=".pb") as out:
        command = [settings.benchmark_model_path, f"--graph={artifact_path}", "--enable_op_profiling=true",
                   "--op_profiling_output_mode=proto", f"--op_profiling_output_file={out.name}",
                   f"--num_runs={settings.iterations}", f"--warmup_runs={settings.dropped}"]
        if options.threads > 0:
            command.append(f"--num_threads={options.threads}")
        log.info("LiteRT per-op time: %s", " ".join(command))
        subprocess.run(command, check=True, capture_output=True, timeout=BENCHMARK_TIMEOUT_S)
        return op_times_from_proto(out.name)


def timed_profile(rows: list[LayerRow], times: dict[int, Any], settings: ProfileSettings) -> LayerProfile:
    """Rows with benchmark_model's per-op mean; a delegate's whole partition is timed as one op there."""
    timed = []
    for row in rows:
        op = times.get(int(row.name.rsplit(":", 1)[1]))
        per_run = max(1, round(op.times_called / max(settings.iterations, 1))) if op is not None else 1
        timed.append(row if op is None else _with_time(row, op.avg_us, per_run))
    return LayerProfile(available=True, profiler="benchmark_model --enable_op_profiling", layers=tuple(timed),
                        iterations=settings.iterations, dropped_iterations=settings.dropped,
                        placement_source="interpreter._get_ops_details(): DELEGATE nodes walked back",
                        notes="benchmark_model reports each op's mean only: the median and p90 columns hold it; "
                              "nodes a delegate took are timed as its one partition, not one by one")


def _with_time(row: LayerRow, avg_us: float, count: int) -> LayerRow:
    return LayerRow(row.name, row.op_type, row.op_family, row.placement, row.precision, row.is_glue, count, True,
                    avg_us, avg_us, row.output_shapes, row.source_nodes)
