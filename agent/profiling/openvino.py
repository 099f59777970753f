"""OpenVINO's per-layer profile: PERF_COUNT on its own compiled model, never the measured one.

After each profiled inference the infer request's get_profiling_info() gives every runtime node's
real time, its exec_type (the kernel that ran, e.g. jit_avx2_I8, brgconv_avx512_amx_bf16: the
precision it really ran at) and its status; the compiled model's runtime graph gives each node's
originalLayersNames, the source layers it was fused from (a Convolution often carries its Add and
Relu), which is what aligns it with another runtime's table. Nodes that did not run (fused into
another, or constants) are left out; the notes say how many.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefarm.agent.backends import openvino as ov_backend
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.profiling.families import is_glue, op_family
from edgefarm.agent.profiling.records import LayerProfile, LayerRow
from edgefarm.agent.profiling.settings import ProfileSettings

PROFILER = "openvino PERF_COUNT"
_CONVERSION_SUFFIX = "/WithoutBiases"
# exec_type tokens -> the precision the kernel ran at (checked in order: bf16 before f16)
_PRECISION_TOKENS = (("bf16", "bf16"), ("i8", "int8"), ("u8", "int8"), ("fp16", "fp16"), ("f16", "fp16"),
                     ("fp32", "fp32"), ("f32", "fp32"), ("i32", "int32"), ("i64", "int64"))


@dataclass(frozen=True)
class NodeInfo:
    """A runtime node as the runtime model describes it."""

    source_nodes: tuple[str, ...]
    output_shapes: tuple[str, ...]
    runtime_precision: str


def profile(engine: Any, artifact_path: str, options: BackendOptions, feeds: dict[str, np.ndarray],
            settings: ProfileSettings) -> LayerProfile:
    compiled = _profiling_model(engine, artifact_path, options)
    request = compiled.create_infer_request()
    runs: list[list[Any]] = []
    for index in range(settings.dropped + settings.iterations):
        request.infer(feeds)
        if index >= settings.dropped:
            runs.append(list(request.get_profiling_info()))
    nodes = runtime_nodes(compiled.get_runtime_model())
    return layer_profile(runs, nodes, engine.device, settings, ov_backend.version() or "unknown")


def _profiling_model(engine: Any, artifact_path: str, options: BackendOptions) -> Any:
    model = ov_backend._reshaped(ov_backend.read_model(artifact_path), options)
    return ov_backend._core().compile_model(model, engine.device, {**engine.config, "PERF_COUNT": True})


def runtime_nodes(runtime_model: Any) -> dict[str, NodeInfo]:
    """Each runtime node's source layers, output shapes and runtime precision, by its friendly name."""
    nodes = {}
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        names = _rt_text(info, "originalLayersNames")
        nodes[op.get_friendly_name()] = NodeInfo(
            source_names(names.split(",")),
            tuple(_shape_text(output.get_partial_shape()) for output in op.outputs()),
            _rt_text(info, "runtimePrecision"))
    return nodes


def source_names(names: list[str]) -> tuple[str, ...]:
    """originalLayersNames, plus the ONNX node each came from where OpenVINO's conversion renamed it:
    a Gemm or Conv becomes "/9/Gemm/WithoutBiases" (its bias split off), and int8 adds
    ".../DequantizationMultiply"; the ONNX name "/9/Gemm" is what another runtime's table lists."""
    found = [name for name in names if name]
    for name in list(found):
        onnx_name = name.split(_CONVERSION_SUFFIX, 1)[0]
        if onnx_name != name and onnx_name not in found:
            found.append(onnx_name)
    return tuple(found)


def _rt_text(info: Any, key: str) -> str:
    return info[key].astype(str) if key in info else ""


def _shape_text(shape: Any) -> str:
    return "x".join(str(d.get_length()) if d.is_static else "?" for d in shape) or "scalar"


def layer_profile(runs: list[list[Any]], nodes: dict[str, NodeInfo], device: str, settings: ProfileSettings,
                  version: str) -> LayerProfile:
    """One row per node that ran, in execution order, timed over the kept runs."""
    executed = [entry for entry in runs[0] if _ran(entry)] if runs else []
    skipped = len(runs[0]) - len(executed) if runs else 0
    rows = tuple(_row(entry, _times(runs, entry.node_name), nodes.get(entry.node_name), device)
                 for entry in executed)
    totals = [sum(_us(entry) for entry in run if _ran(entry)) for run in runs]
    return LayerProfile(available=True, profiler=f"{PROFILER} (openvino {version})", iterations=len(runs),
                        dropped_iterations=settings.dropped, layers=rows,
                        placement_source=f"the {device} plugin runs every node; precision from each node's "
                                         "exec_type, source layers from originalLayersNames",
                        notes=f"{skipped} nodes did not run (fused into the node that lists them as source "
                              "layers, or constants) and are left out",
                        profiled_median_us=float(np.median(totals)) if totals else 0.0)


def _ran(entry: Any) -> bool:
    return str(entry.status).endswith("EXECUTED")


def _us(entry: Any) -> float:
    return entry.real_time.total_seconds() * 1e6


def _times(runs: list[list[Any]], name: str) -> np.ndarray:
    return np.asarray([sum(_us(e) for e in run if e.node_name == name) for run in runs], dtype=float)


def _row(entry: Any, times: np.ndarray, node: NodeInfo | None, device: str) -> LayerRow:
    family = op_family(entry.node_type)
    return LayerRow(name=entry.node_name, op_type=entry.node_type, op_family=family, placement=device,
                    precision=exec_precision(entry.exec_type) or _runtime_precision(node),
                    is_glue=is_glue(family), timed=True, median_us=float(np.median(times)),
                    p90_us=float(np.percentile(times, 90)), output_shapes=node.output_shapes if node else (),
                    source_nodes=node.source_nodes if node else ())


def exec_precision(exec_type: str) -> str:
    """The precision in an exec_type: jit_avx2_I8 -> int8, brgconv_avx512_amx_bf16 -> bf16, ref_any_FP32 -> fp32."""
    tokens = re.split(r"[_\s]+", exec_type.lower())
    for token, precision in _PRECISION_TOKENS:
        if token in tokens:
            return precision
    return ""


def _runtime_precision(node: NodeInfo | None) -> str:
    return exec_precision(node.runtime_precision) if node else ""
