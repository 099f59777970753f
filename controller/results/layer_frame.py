"""Stored layer profiles → pandas frames, as TREx reads TensorRT engines: one row per layer with the same
columns for every runtime, and one row per result, so every per-layer view is one groupby."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from edgefarm.controller.agents.records import LayerProfile, LayerRow
from edgefarm.controller.results.store import StoredResult

RESULT_KEYS = ("job_id", "run_id", "model", "variant", "device", "backend")
PROFILE_COLUMNS = (*RESULT_KEYS, "profiled", "available", "reason", "profiler", "iterations", "layer_count",
                   "timed", "layer_sum_us", "e2e_p50_us", "profiled_run_us", "placement_source", "notes")
LAYER_COLUMNS = ("job_id", "position", "name", "op_type", "op_family", "placement", "precision", "is_glue",
                 "count", "timed", "median_us", "p90_us", "output_shapes", "source_nodes")
NOT_PROFILED = "measured without --profile"


@dataclass(frozen=True)
class LayerTables:
    """`profiles`: one row per result (profiled or not); `layers`: one row per layer of the profiled ones,
    in execution order, joined to its result by `job_id`."""

    profiles: pd.DataFrame
    layers: pd.DataFrame

    @property
    def any_layers(self) -> bool:
        return not self.layers.empty

    def layers_of(self, job_id: str) -> pd.DataFrame:
        return self.layers[self.layers["job_id"] == job_id]


def layer_tables(stored: Iterable[StoredResult]) -> LayerTables:
    """The frames of the given stored results (reads the records only; nothing is measured)."""
    stored = list(stored)
    profiles = [_profile_row(s) for s in stored]
    layers = [_layer_row(s.job.id, i, row) for s in stored if s.result.layer_profile is not None
              for i, row in enumerate(s.result.layer_profile.layers)]
    times = {"median_us": float, "p90_us": float}   # None (untimed) reads as NaN
    return LayerTables(pd.DataFrame(profiles, columns=list(PROFILE_COLUMNS)).astype({"layer_sum_us": float,
                                                                                    "profiled_run_us": float}),
                       pd.DataFrame(layers, columns=list(LAYER_COLUMNS)).astype(times))


def _profile_row(s: StoredResult) -> dict:
    keys = dict(zip(RESULT_KEYS, (s.job.id, s.job.run_id, s.job.model, s.job.variant, s.job.device,
                                  s.result.backend or s.job.backend), strict=True))
    profile = s.result.layer_profile
    e2e_us = s.result.latency.p50_ms * 1000
    if profile is None:
        return {**keys, **_empty(e2e_us), "reason": NOT_PROFILED}
    return {**keys, **_empty(e2e_us), **_measured(profile)}


def _empty(e2e_us: float) -> dict:
    return {"profiled": False, "available": False, "reason": "", "profiler": "", "iterations": 0,
            "layer_count": 0, "timed": False, "layer_sum_us": None, "e2e_p50_us": e2e_us, "profiled_run_us": None,
            "placement_source": "", "notes": ""}


def _measured(profile: LayerProfile) -> dict:
    timed = bool(profile.layers) and all(row.timed for row in profile.layers)
    reason = profile.unavailable_reason or ("" if timed else profile.timing_unavailable_reason)
    return {"profiled": True, "available": profile.available, "reason": reason, "profiler": profile.profiler,
            "iterations": profile.iterations, "layer_count": len(profile.layers), "timed": timed,
            "layer_sum_us": sum(row.median_us for row in profile.layers) if timed else None,
            # 0 from runtimes whose pass has no run interval of its own (LiteRT placement, older agents)
            "profiled_run_us": profile.profiled_median_us or None,
            "placement_source": profile.placement_source, "notes": profile.notes}


def _layer_row(job_id: str, position: int, row: LayerRow) -> dict:
    return {"job_id": job_id, "position": position, "name": row.name, "op_type": row.op_type,
            "op_family": row.op_family, "placement": row.placement, "precision": row.precision,
            "is_glue": row.is_glue, "count": row.count, "timed": row.timed,
            "median_us": row.median_us if row.timed else None, "p90_us": row.p90_us if row.timed else None,
            "output_shapes": " ".join(row.output_shapes), "source_nodes": " + ".join(row.source_nodes)}
