"""benchmark_model's op-profiling proto (--op_profiling_output_mode=proto), read with the message
classes the ai-edge-litert wheel ships (ai_edge_litert/profiling_info_pb2.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from edgefarm.agent.profiling.records import ProfileFormatError

# benchmark_model names an op "[output tensor names]:node index".
_NODE_INDEX = re.compile(r":(\d+)$")


@dataclass(frozen=True)
class OpTime:
    node_type: str
    avg_us: float
    times_called: int            # over all runs, not per run


def op_times_from_proto(path: str) -> dict[int, OpTime]:
    """Node index -> its mean time per run, from the runtime profile of the primary subgraph."""
    from ai_edge_litert import profiling_info_pb2  # the wheel's own copy of profiling_info.proto

    data = profiling_info_pb2.BenchmarkProfilingData()
    try:
        with open(path, "rb") as f:
            data.ParseFromString(f.read())
    except Exception as exc:  # protobuf raises DecodeError, or OSError for the file
        raise ProfileFormatError(f"benchmark_model profile {path} cannot be read: {exc}") from exc
    times: dict[int, OpTime] = {}
    for subgraph in data.runtime_profile.subgraph_profiles[:1]:
        for op in subgraph.per_op_profiles:
            match = _NODE_INDEX.search(op.name)
            if match is None:
                raise ProfileFormatError(f"benchmark_model profile {path}: op {op.name!r} has no ':node index'")
            times[int(match.group(1))] = OpTime(op.node_type, float(op.inference_microseconds.avg),
                                                int(op.times_called))
    return times
