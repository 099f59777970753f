"""Which source-graph nodes each node of ONNX Runtime's optimized graph came from.

ONNX Runtime names a fused node after one of the nodes or tensors it replaced ("/2/Clip_output_0_nchwc",
"/0/Conv_token_1"), not after all of them. So each optimized node first claims the one source node its
name (or an output's name) points at, suffixes stripped; then it takes the source nodes upstream of
that one whose tensors vanished from the optimized graph (they were fused in), stopping at tensors the
optimized graph still has and at nodes another optimized node claimed. Reads models with the `onnx`
package where the board has it; without it, names are mapped alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# _nchwc: NchwcTransformer; _token_N: fused QDQ groups and reorders; _kernel_time: profile event names.
_ORT_SUFFIX = re.compile(r"((_nchwc)|(_token_\d+)|(_kernel_time))+$")
_MAX_REGION = 64   # a fused node that swallows more than this many source nodes is reported as the first 64


@dataclass(frozen=True)
class Graph:
    op_types: dict[str, str]                 # node name -> op type
    inputs: dict[str, tuple[str, ...]]       # node name -> input tensors
    outputs: dict[str, tuple[str, ...]]      # node name -> output tensors
    producers: dict[str, str]                # tensor -> node name

    @property
    def tensors(self) -> set[str]:
        return set(self.producers) | {t for names in self.inputs.values() for t in names}


def strip_ort_suffix(name: str) -> str:
    return _ORT_SUFFIX.sub("", name)


def read_graph(path: str) -> Graph | None:
    """The graph of an ONNX file, or None when the `onnx` package is not installed here."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(path, load_external_data=False)
    op_types, inputs, outputs, producers = {}, {}, {}, {}
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        op_types[name], inputs[name], outputs[name] = node.op_type, tuple(node.input), tuple(node.output)
        for tensor in node.output:
            producers[tensor] = name
    return Graph(op_types, inputs, outputs, producers)


def source_nodes(source: Graph, optimized: Graph) -> dict[str, tuple[str, ...]]:
    """For each optimized node, the source nodes it came from (empty for nodes ORT inserted)."""
    direct = {name: _direct_source(name, optimized, source) for name in optimized.op_types}
    claimed = {key for key in direct.values() if key is not None}
    kept = optimized.tensors
    return {name: () if key is None else tuple(_fused_region(key, source, kept, claimed))
            for name, key in direct.items()}


def _direct_source(name: str, optimized: Graph, source: Graph) -> str | None:
    stripped = strip_ort_suffix(name)
    if stripped in source.op_types:
        return stripped
    for candidate in (stripped, *(strip_ort_suffix(t) for t in optimized.outputs.get(name, ()))):
        if candidate in source.producers:
            return source.producers[candidate]
    return None


def _fused_region(key: str, source: Graph, kept: set[str], claimed: set[str]) -> list[str]:
    region, todo = [key], [key]
    while todo and len(region) < _MAX_REGION:
        for tensor in source.inputs.get(todo.pop(), ()):
            producer = source.producers.get(tensor)
            if tensor in kept or producer is None or producer in claimed or producer in region:
                continue
            if source.op_types[producer] == "Constant":
                continue   # folded into the node's attributes or weights
            region.append(producer)
            todo.append(producer)
    return region
