"""Stored results → one pandas row per measured job (what reports and the CLI read)."""
from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd

from edgefarm.controller.agents.records import BenchmarkResult, PowerSummary
from edgefarm.controller.execution.fidelity import device_below_host
from edgefarm.controller.execution.fidelity import summary as fidelity_summary
from edgefarm.controller.planning.input_plan import shapes_text
from edgefarm.controller.results.stability import instability
from edgefarm.controller.results.store import ResultStore, StoredResult

NOT_AVAILABLE = "not available"
NOT_SEPARABLE = "not separable"
NOT_RECORDED = "not recorded"
_FIDELITY_COLUMNS = ("fidelity_cosine", "fidelity_snr_db", "top1_agreement")  # host; device_* on the board


def results_frame(store: ResultStore, run_id: str) -> pd.DataFrame:
    return pd.DataFrame([result_row(r) for r in store.results(run_id)])


def result_row(stored: StoredResult) -> dict:
    r, job, v = stored.result, stored.job, stored.variant
    lat = r.latency
    row = {
        "run_id": job.run_id, "model": job.model, "variant": job.variant, "device": job.device,
        "backend": job.backend, "latency_p50_ms": lat.p50_ms, "latency_p90_ms": lat.p90_ms,
        "latency_p99_ms": lat.p99_ms, "fps": r.fps, "size_bytes": v.size_bytes,
        "accuracy": math.nan if v.accuracy is None else v.accuracy, "load_ms": r.load_ms,
        "first_inference_ms": r.first_inference_ms, "latency_p95_ms": lat.p95_ms,
        "latency_mean_ms": lat.mean_ms, "latency_std_ms": lat.std_ms, "latency_cv": lat.cv,
        "latency_count": lat.count,
        "compute_p50_ms": r.compute_latency.p50_ms if r.compute_separable else NOT_SEPARABLE,
        "peak_rss_mb": r.peak_rss_bytes / 2**20, "provider": r.provider,
        "device_accuracy": r.accuracy if r.accuracy_available else math.nan,
        "throttled": r.environment.throttled, "measure_seconds": r.measure_seconds,
        "stopped_by": r.stopped_by or NOT_RECORDED,   # in --json rows; the CSV's columns stay as they were
        "unstable": instability(r),                    # why its numbers moved while it ran; "" when steady
        "measured_at": datetime.fromtimestamp(stored.measured_at, UTC).isoformat(timespec="seconds"),
    }
    row.update(_power_columns(r.power))
    row.update({k: v.stats[k] for k in ("params_after", "sparsity_after", "macs_after") if k in v.stats})
    row.update(_input_columns(r))
    row.update(_fidelity_columns(v.stats, r))
    return row


def _input_columns(r: BenchmarkResult) -> dict:
    """The conditions a latency belongs to: the shapes every input ran at, and whether the data was real."""
    if not r.input_source:  # measured by an agent older than edgefarm.v1.1
        return {"input_shapes": NOT_RECORDED, "synthetic_inputs": NOT_RECORDED}
    return {"input_shapes": shapes_text(r.input_shapes),
            "synthetic_inputs": r.input_source == "synthetic"}


def _fidelity_columns(stats: dict, r: BenchmarkResult) -> dict:
    """Host fidelity (the variant on ONNX Runtime here) beside device fidelity (the board's engine)."""
    board = fidelity_summary(r.fidelity)
    host = {k: stats.get(k, math.nan) for k in _FIDELITY_COLUMNS}
    device = {f"device_{k}": board.get(k, math.nan) for k in _FIDELITY_COLUMNS}
    host["fidelity_source"] = stats.get("fidelity_source", NOT_AVAILABLE)
    flag = "device below host" if device_below_host(host, device) else ""
    if r.fidelity_unavailable_reason:
        flag = f"not available on the device: {r.fidelity_unavailable_reason}"
    return {**host, **device, "fidelity_flag": flag}


def _power_columns(power: PowerSummary) -> dict:
    if not power.available:
        return {"avg_power_w": NOT_AVAILABLE, "energy_mj_per_inference": NOT_AVAILABLE,
                "power_sensor": NOT_AVAILABLE}
    return {"avg_power_w": power.avg_power_w, "energy_mj_per_inference": power.energy_per_inference_mj,
            "power_sensor": f"{power.sensor} ({power.sample_count} samples)"}
