"""ExecuTorch's per-op profile: ETDump events read by the devtools Inspector, on a program loaded for it.

The full `executorch` runtime records an ETDump when a program is loaded with enable_etdump: one event
per operator run on the CPU kernels ("native_call_mean.out") and, where the XNNPACK build profiles its
ops, one per XNNPACK operator inside each delegated partition ("Convolution (NHWC, QC8) IGEMM #1").
A build whose delegate records no inner events shows each partition as one row (its DELEGATE_CALL),
and the notes say so. Without an ETRecord the events carry no source-graph names: rows align with
other runtimes by op family only.

The torch-free executorch-numpy-runtime writes no ETDump: its table is the program's placement
(agent/pte_program.py), one row per partition or CPU-kernel op, with per-op time "not available".
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from typing import Any, Iterable

import numpy as np

from edgefarm.agent.backends import executorch as et_backend
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.profiling.families import is_glue, op_family
from edgefarm.agent.profiling.records import LayerProfile, LayerRow
from edgefarm.agent.profiling.settings import ProfileSettings
from edgefarm.agent.pte_program import Method

PROFILER = "executorch ETDump + devtools Inspector"
PLACEMENT_PROFILER = "executorch program placement (.pte instructions)"
# Events that wrap others (the whole run, one instruction, one delegated partition): never rows themselves.
_WRAPPERS = ("Method::execute", "OPERATOR_CALL", "DELEGATE_CALL")
_KERNEL_PREFIX = "native_call_"
XNNPACK, CPU_KERNELS = "XNNPACK", "CPU kernels"
NO_ETDUMP = ("per-op time not available: executorch-numpy-runtime writes no ETDump; install the full executorch "
             "wheel (Python >= 3.10, with torch) on the board for per-op time")


def profile(engine: Any, artifact_path: str, options: BackendOptions, feeds: dict[str, np.ndarray],
            settings: ProfileSettings) -> LayerProfile:
    if engine.runtime.package != et_backend.FULL:
        return placement_profile(engine.placement, NO_ETDUMP)
    folder = tempfile.mkdtemp(prefix="edgefarm-etdump-")
    try:
        etdump = _record_etdump(artifact_path, options, feeds, settings, folder)
        return etdump_profile(_inspector_events(etdump), settings)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _record_etdump(artifact_path: str, options: BackendOptions, feeds: dict[str, np.ndarray],
                   settings: ProfileSettings, folder: str) -> str:
    engine = et_backend.load(artifact_path, options, etdump=True)
    try:
        for _ in range(settings.dropped + settings.iterations):
            engine.run(feeds)
        path = os.path.join(folder, "profile.etdp")
        engine.program.write_etdump_result_to_file(path, os.path.join(folder, "debug.bin"))
    finally:
        engine.close()
    return path


def _inspector_events(etdump: str) -> list[tuple[str, bool, list[float]]]:
    """(name, delegated, raw times in µs per run) of each event of the Execute block, in order."""
    from executorch.devtools import Inspector
    from executorch.devtools.inspector import TimeScale

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Inspector warns that no ETRecord was given: we know, see above
        inspector = Inspector(etdump_path=etdump, source_time_scale=TimeScale.NS, target_time_scale=TimeScale.US)
    return [(event.name, bool(event.is_delegated_op), list(event.perf_data.raw) if event.perf_data else [])
            for block in inspector.event_blocks if block.name == "Execute" for event in block.events]


def etdump_profile(events: Iterable[tuple[str, bool, list[float]]], settings: ProfileSettings) -> LayerProfile:
    """Rows from the Inspector's events: XNNPACK ops per partition, CPU-kernel ops; first runs dropped."""
    events = list(events)
    inner = any(delegated for _, delegated, _ in events)
    rows, partition = [], 0
    for name, delegated, raw in events:
        if name == "DELEGATE_CALL":
            partition += 1
        times = np.asarray(raw[settings.dropped:] or raw, dtype=float)
        row = _event_row(name, delegated, inner, partition, times)
        if row is not None:
            rows.append(row)
    run_us = next((raw for name, _, raw in events if name == "Method::execute"), [])
    return LayerProfile(available=True, profiler=PROFILER, iterations=settings.iterations,
                        dropped_iterations=settings.dropped, layers=tuple(rows),
                        placement_source="ETDump events: XNNPACK operators inside delegated partitions, "
                                         "native_call_* operators on the CPU kernels",
                        notes=_notes(inner), profiled_median_us=float(np.median(run_us[settings.dropped:] or
                                                                                 run_us or [0.0])))


def _event_row(name: str, delegated: bool, inner: bool, partition: int, times: np.ndarray) -> LayerRow | None:
    if delegated:   # an XNNPACK operator; its partition's DELEGATE_CALL event comes after it
        return _timed_row(f"partition {partition + 1}: {name}", _xnnpack_op(name), XNNPACK, times)
    if name == "DELEGATE_CALL" and not inner:
        return _timed_row(f"partition {partition}", "XnnpackPartition", XNNPACK, times)
    if name.startswith(_KERNEL_PREFIX):
        return _timed_row(name, "aten::" + name[len(_KERNEL_PREFIX):], CPU_KERNELS, times)
    return None   # wrappers and method bookkeeping


def _xnnpack_op(name: str) -> str:
    """'Convolution (NHWC, QC8) IGEMM #1' -> 'Convolution (NHWC, QC8) IGEMM'."""
    return name.rsplit(" #", 1)[0]


def _timed_row(name: str, op_type: str, placement: str, times: np.ndarray) -> LayerRow:
    family = op_family(op_type.split("::")[-1].split(" (")[0].split(".")[0])  # aten::mean.out -> mean
    timed = times.size > 0
    return LayerRow(name=name, op_type=op_type, op_family=family, placement=placement,
                    precision=_precision(op_type), is_glue=is_glue(family), timed=timed,
                    median_us=float(np.median(times)) if timed else 0.0,
                    p90_us=float(np.percentile(times, 90)) if timed else 0.0)


def _precision(op_type: str) -> str:
    """XNNPACK names its datatype in the op: (NC, QS8, QC8W) is int8, F32 fp32, F16 fp16."""
    upper = op_type.upper()
    if any(token in upper for token in ("QS8", "QU8", "QC8", "QD8", "X8")):
        return "int8"
    if "F16" in upper:
        return "fp16"
    return "fp32" if "F32" in upper else ""


def _notes(inner: bool) -> str:
    if inner:
        return ("XNNPACK operators are timed one by one inside their partitions, in whole microseconds (0: under "
                "1 us); no ETRecord, so no source names or shapes: these rows align with other runtimes' only by "
                "op family")
    return "this XNNPACK build records no per-operator events: each delegated partition is one row"


def placement_profile(method: Method, timing_reason: str) -> LayerProfile:
    """The program's placement only: one row per delegated partition and per CPU-kernel op, untimed."""
    rows, partition = [], 0
    for step in method.steps:
        if step.kind == "delegate":
            partition += 1
            rows.append(LayerRow(name=f"partition {partition}", op_type=step.name, op_family="Delegate",
                                 placement=XNNPACK if step.name == "XnnpackBackend" else step.name))
        else:
            family = op_family(step.name.split("::")[-1].split(".")[0])
            rows.append(LayerRow(name=f"{step.name}:{step.index}", op_type=step.name, op_family=family,
                                 placement=CPU_KERNELS, is_glue=is_glue(family)))
    return LayerProfile(available=True, profiler=PLACEMENT_PROFILER, layers=tuple(rows),
                        timing_unavailable_reason=timing_reason,
                        placement_source="the program's DelegateCall and KernelCall instructions",
                        notes="each delegated partition is one row: the program does not list the ops inside it")
