"""ONNX Runtime's per-layer profile: its own session with `enable_profiling`, never the measured one.

The session also writes its optimized model (`optimized_model_filepath`), so fused node names map back
to the source nodes they replaced (onnx_graph.py). Placement is each kernel event's provider; where
ONNX Runtime has `get_provider_graph_assignment_info` (1.24+, with
session.record_ep_graph_assignment_info=1) the source nodes of a compiled EP's fused node come from it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Sequence

import numpy as np

from edgefarm.agent.backends import onnxruntime as ort_backend
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.profiling.families import is_glue, op_family
from edgefarm.agent.profiling.onnx_graph import read_graph, source_nodes
from edgefarm.agent.profiling.ort_events import NodeTimes, ProfileRuns, load_events, runs_from_events
from edgefarm.agent.profiling.records import LayerProfile, LayerRow
from edgefarm.agent.profiling.settings import ProfileSettings

PROFILER = "onnxruntime enable_profiling"
# EPs that compile a whole subgraph into one kernel: the profile shows one fused node for all of it.
COMPILED_EPS = ("TensorrtExecutionProvider", "OpenVINOExecutionProvider", "NvTensorRTRTXExecutionProvider",
                "QNNExecutionProvider", "CoreMLExecutionProvider", "VitisAIExecutionProvider")
_PRECISIONS = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "double": "fp64"}
_ASSIGNMENT_ENTRY = "session.record_ep_graph_assignment_info"


def profile(engine: Any, artifact_path: str, options: BackendOptions, feeds: dict[str, np.ndarray],
            settings: ProfileSettings) -> LayerProfile:
    import onnxruntime as ort

    folder = tempfile.mkdtemp(prefix="edgefarm-ort-profile-")
    try:
        session = _profiling_session(ort, artifact_path, options, folder)
        for _ in range(settings.dropped + settings.iterations):
            session.run(None, feeds)
        trace = session.end_profiling()
        runs = runs_from_events(load_events(trace), settings.dropped, trace)
        sources = _source_map(artifact_path, os.path.join(folder, "optimized.onnx"))
        return _profile(runs, sources, _assignment(session), ort.__version__)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _profiling_session(ort: Any, path: str, options: BackendOptions, folder: str) -> Any:
    so = ort_backend._session_options(ort, options)
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(folder, "profile")
    so.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
    so.add_session_config_entry(_ASSIGNMENT_ENTRY, "1")   # unknown keys are ignored by older ORTs
    wanted = options.execution_provider or ort_backend.CPU_EP
    chain = ort_backend._provider_chain(ort, wanted, options, "")
    return ort.InferenceSession(path, sess_options=so, providers=chain)


def _source_map(source_path: str, optimized_path: str) -> dict[str, tuple[str, ...]]:
    if not os.path.exists(optimized_path):   # compiled EPs cannot save their graph
        return {}
    source, optimized = read_graph(source_path), read_graph(optimized_path)
    return {} if source is None or optimized is None else source_nodes(source, optimized)


def _assignment(session: Any) -> dict[str, list[str]]:
    """EP -> the source nodes it took, where this ONNX Runtime can say (1.24+)."""
    if not hasattr(session, "get_provider_graph_assignment_info"):
        return {}
    assigned: dict[str, list[str]] = {}
    for subgraph in session.get_provider_graph_assignment_info():
        assigned.setdefault(subgraph.ep_name, []).extend(node.name for node in subgraph.get_nodes())
    return assigned


def _profile(runs: ProfileRuns, sources: dict[str, tuple[str, ...]], assigned: dict[str, list[str]],
             version: str) -> LayerProfile:
    layers = tuple(_row(node, sources.get(node.name, ()), assigned) for node in runs.nodes)
    return LayerProfile(available=True, profiler=f"{PROFILER} (onnxruntime {version})", iterations=len(runs.run_us),
                        dropped_iterations=runs.dropped, layers=layers,
                        placement_source=_placement_source(assigned, version), notes=_notes(assigned),
                        profiled_median_us=float(np.median(runs.run_us)))


def _row(node: NodeTimes, sources: Sequence[str], assigned: dict[str, list[str]]) -> LayerRow:
    family = op_family(node.op_type)
    if not sources and node.provider in COMPILED_EPS:
        sources = assigned.get(node.provider, ())
    times = np.asarray(node.per_run_us, dtype=float)
    return LayerRow(name=node.name, op_type=node.op_type, op_family=family, placement=node.provider or "unknown",
                    precision=_precision(node.output_type_shape), is_glue=is_glue(family), count=node.count,
                    timed=True, median_us=float(np.median(times)), p90_us=float(np.percentile(times, 90)),
                    output_shapes=_shapes(node.output_type_shape), source_nodes=tuple(sources))


def _precision(outputs: Sequence[Any]) -> str:
    """The element type of the node's first output, as the kernel really produced it."""
    for output in outputs:
        if isinstance(output, dict) and output:
            element = next(iter(output))
            return _PRECISIONS.get(element, element)
    return ""


def _shapes(outputs: Sequence[Any]) -> tuple[str, ...]:
    shapes = []
    for output in outputs:
        dims = next(iter(output.values()), []) if isinstance(output, dict) and output else []
        shapes.append("x".join(str(d) for d in dims) or "scalar")
    return tuple(shapes)


def _placement_source(assigned: dict[str, list[str]], version: str) -> str:
    if assigned:
        return ("each kernel event's provider; source nodes per EP from get_provider_graph_assignment_info "
                f"(onnxruntime {version})")
    return (f"each kernel event's provider (onnxruntime {version} has no get_provider_graph_assignment_info; "
            "the verbose 'Node placements' log was not read)")


def _notes(assigned: dict[str, list[str]]) -> str:
    compiled = [f"{ep} compiled {len(nodes)} source nodes into fused nodes, each shown as one layer"
                for ep, nodes in assigned.items() if ep in COMPILED_EPS]
    return "; ".join(compiled)


