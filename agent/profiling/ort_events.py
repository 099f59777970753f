"""Reading ONNX Runtime's profile JSON (Chrome trace events) into per-node times per run.

Only the `*_kernel_time` node events are read (older ONNX Runtimes also write `*_fence_before` and
`*_fence_after` events; they are not kernel time). Node events carry no run index, so each is given
to the `model_run` interval that contains it; the first runs are dropped (arena growth, caches).
"""
from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import Any

from edgefarm.agent.profiling.records import ProfileFormatError

KERNEL_SUFFIX = "_kernel_time"


@dataclass(frozen=True)
class NodeTimes:
    name: str
    op_type: str
    provider: str
    per_run_us: tuple[float, ...]     # summed kernel time in each kept run where the node ran
    count: int                        # kernel events per run
    output_type_shape: tuple[Any, ...]


@dataclass(frozen=True)
class ProfileRuns:
    nodes: tuple[NodeTimes, ...]      # in execution order
    run_us: tuple[float, ...]         # duration of each kept model_run
    dropped: int


def load_events(path: str) -> list[dict[str, Any]]:
    """The events of a profile file; a file that is not ORT's trace format raises ProfileFormatError."""
    try:
        with open(path, encoding="utf-8") as f:
            events = json.load(f)
    except (OSError, ValueError) as exc:
        raise ProfileFormatError(f"profile file {path} cannot be read: {exc}") from exc
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ProfileFormatError(f"profile file {path} is not a list of trace events (ONNX Runtime's format)")
    return events


def runs_from_events(events: list[dict[str, Any]], drop: int, path: str) -> ProfileRuns:
    try:
        runs = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
                      if e.get("name") == "model_run")
        kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(KERNEL_SUFFIX)]
        assigned = [(_run_index(runs, float(e["ts"])), e) for e in kernels]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileFormatError(f"profile file {path} has an event without a numeric ts/dur: {exc!r}") from exc
    if len(runs) <= drop:
        raise ProfileFormatError(f"profile file {path} holds {len(runs)} model_run events, fewer than the "
                                 f"{drop + 1} the pass made")
    kept = [(i - drop, e) for i, e in assigned if i is not None and i >= drop]
    return ProfileRuns(_node_times(kept, len(runs) - drop), tuple(end - start for start, end in runs[drop:]), drop)


def _run_index(runs: list[tuple[float, float]], ts: float):
    i = bisect.bisect_right(runs, (ts, float("inf"))) - 1
    return i if i >= 0 and runs[i][0] <= ts <= runs[i][1] else None


def _node_times(kept: list[tuple[int, dict[str, Any]]], run_count: int) -> tuple[NodeTimes, ...]:
    per_run: dict[str, list[float]] = {}
    events_of: dict[str, int] = {}
    first: dict[str, dict[str, Any]] = {}
    for run, event in kept:
        name = event["name"][: -len(KERNEL_SUFFIX)]
        times = per_run.setdefault(name, [0.0] * run_count)
        times[run] += float(event["dur"])
        events_of[name] = events_of.get(name, 0) + 1
        first.setdefault(name, event)
    return tuple(_one_node(name, first[name], times, events_of[name], run_count) for name, times in per_run.items())


def _one_node(name: str, event: dict[str, Any], times: list[float], events: int, run_count: int) -> NodeTimes:
    args = event.get("args") or {}
    return NodeTimes(name, str(args.get("op_name", "")), str(args.get("provider", "")), tuple(times),
                     max(1, round(events / run_count)), tuple(args.get("output_type_shape") or ()))
