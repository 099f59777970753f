"""TensorRT's per-layer profile: an IProfiler on the execution context, plus the engine inspector's JSON.

Engines are built at ProfilingVerbosity.DETAILED (backends/tensorrt.py), so the inspector's
get_engine_information(LayerInformationFormat.JSON) gives each layer's type, tactic, output formats
(precision) and the ONNX nodes it came from ("Metadata": "[ONNX Layer: /conv1/Conv]", one per fused
node). The profiler is attached only after the headline measurement, for a capped number of runs.
GPU-only: the parsing below is tested against JSON in NVIDIA's documented format (tests/data/tensorrt/).
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.profiling.families import is_glue, op_family
from edgefarm.agent.profiling.records import LayerProfile, LayerRow, ProfileFormatError
from edgefarm.agent.profiling.settings import ProfileSettings

PROFILER = "tensorrt IProfiler + IEngineInspector"
# TensorRT 8.6+ separates ONNX names in Metadata with an ASCII record separator; older ones with newlines.
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
# "Row major linear FP32", "Channel major FP16 format where channel % 8 == 0", "... Int8 ..."
_PRECISION = re.compile(r"\b(FP32|FP16|BF16|FP8|Int8|INT8|Int32|INT32|Int64|Bool|UInt8)\b")


def profile(engine: Any, artifact_path: str, options: BackendOptions, feeds: dict[str, np.ndarray],
            settings: ProfileSettings) -> LayerProfile:
    import tensorrt as trt

    if options.cuda_graph:
        return LayerProfile.not_available("TensorRT's IProfiler does not see layers inside a CUDA graph; "
                                          "profile without cuda_graph")
    info = _engine_information(trt, engine)
    times = _profiled_runs(trt, engine, feeds, settings)
    return layer_profile(parse_engine_information(info, "engine inspector JSON"), times, settings,
                         "DLA" if options.dla_core >= 0 else "GPU")


def _engine_information(trt: Any, engine: Any) -> str:
    inspector = engine.trt_engine.create_engine_inspector()
    inspector.execution_context = engine.trt_context   # concrete shapes and formats for dynamic inputs
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


def _profiled_runs(trt: Any, engine: Any, feeds: dict[str, np.ndarray],
                   settings: ProfileSettings) -> dict[str, list[float]]:
    class LayerTimes(trt.IProfiler):
        """Called once per layer per run, with that layer's GPU time in ms."""

        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.runs: list[dict[str, float]] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            if not self.runs or layer_name in self.runs[-1]:
                self.runs.append({})
            self.runs[-1][layer_name] = ms

    collector = LayerTimes()
    engine.trt_context.profiler = collector
    for _ in range(settings.dropped + settings.iterations):
        engine.run(feeds)
    return runs_by_layer(collector.runs[settings.dropped:])


def runs_by_layer(runs: list[dict[str, float]]) -> dict[str, list[float]]:
    """Layer name -> its time (µs) in each run, from the profiler's per-run dicts (ms)."""
    times: dict[str, list[float]] = {}
    for run in runs:
        for name, ms in run.items():
            times.setdefault(name, []).append(ms * 1000.0)
    return times


def parse_engine_information(text: str, where: str) -> list[dict[str, Any]]:
    """The inspector's layers; a document that is not its JSON format raises ProfileFormatError naming `where`."""
    try:
        layers = json.loads(text)["Layers"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProfileFormatError(f"{where} is not TensorRT's engine-information JSON: {exc!r}") from exc
    if not isinstance(layers, list):
        raise ProfileFormatError(f"{where}: 'Layers' is not a list")
    # LAYER_NAMES_ONLY engines give plain strings: keep the names, nothing else is known
    return [layer if isinstance(layer, dict) else {"Name": str(layer)} for layer in layers]


def load_trtexec_profile(path: str) -> dict[str, float]:
    """trtexec --exportProfile: [{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...]."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
        return {str(e["name"]): float(e.get("medianMs", e["averageMs"])) * 1000.0 for e in entries if "name" in e}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileFormatError(f"trtexec profile {path} cannot be read: {exc!r}") from exc


def layer_profile(layers: list[dict[str, Any]], times: dict[str, list[float]], settings: ProfileSettings,
                  device: str) -> LayerProfile:
    rows = tuple(_row(layer, times.get(str(layer.get("Name", "")), []), device) for layer in layers)
    return LayerProfile(available=True, profiler=PROFILER, iterations=settings.iterations,
                        dropped_iterations=settings.dropped, layers=rows,
                        placement_source="engine inspector: DLA layers run as one ForeignNode; the rest on the GPU",
                        notes="Reformat layers are TensorRT's own layout or precision conversions (glue)")


def _row(layer: dict[str, Any], times_us: list[float], device: str) -> LayerRow:
    name = str(layer.get("Name", ""))
    op_type = str(layer.get("LayerType", "") or "Unknown")
    family = op_family(op_type)
    outputs = layer.get("Outputs") or []
    timed = bool(times_us)
    values = np.asarray(times_us or [0.0], dtype=float)
    return LayerRow(name=name, op_type=op_type, op_family=family, placement=_placement(layer, device),
                    precision=_precision(outputs), is_glue=is_glue(family), count=1, timed=timed,
                    median_us=float(np.median(values)), p90_us=float(np.percentile(values, 90)),
                    output_shapes=tuple("x".join(str(d) for d in o.get("Dimensions", [])) or "scalar"
                                        for o in outputs if isinstance(o, dict)),
                    source_nodes=tuple(_ONNX_LAYER.findall(str(layer.get("Metadata", "")))))


def _placement(layer: dict[str, Any], device: str) -> str:
    # A DLA subgraph shows as one ForeignNode layer; everything else in an engine runs on the GPU.
    if "ForeignNode" in str(layer.get("LayerType", "")) or "{ForeignNode" in str(layer.get("Name", "")):
        return "DLA"
    return "GPU" if device == "DLA" else device


def _precision(outputs: list[Any]) -> str:
    for output in outputs:
        found = _PRECISION.search(str(output.get("Format/Datatype", ""))) if isinstance(output, dict) else None
        if found:
            return found.group(1).lower()
    return ""
