"""The results schema (store v2) for SQLite and PostgreSQL, and one result's record ↔ row mapping.

Every statistic is a real column, so SQL can read a metric without this code: latency percentiles,
FPS, load and first inference, peak RSS, power and energy, fidelity, and the conditions (backend,
provider, device, input shapes). The raw samples are kept as packed little-endian int64 arrays,
so any statistic can be recomputed; the fingerprint and device description are JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import numpy as np
import sqlalchemy as sa

from edgefarm.agent.fidelity import worst
from edgefarm.controller.agents.records import (
    BenchmarkResult,
    DeviceInfo,
    Fingerprint,
    LatencyStats,
    LayerProfile,
    LayerRow,
    OutputFidelity,
    PowerSummary,
    RuntimeInfo,
    Shapes,
)
from edgefarm.controller.planning.input_plan import shapes_text

SCHEMA_VERSION = 5          # 1 and 2: store v1 (one serialized protobuf per result); 3: store v2;
                            # 4: run liveness; 5: per-layer tables
_SAMPLE_DTYPE = np.dtype("<i8")

metadata = sa.MetaData()

meta = sa.Table("meta", metadata,
                sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.Text, nullable=False))

runs = sa.Table("runs", metadata,
                sa.Column("id", sa.String(64), primary_key=True),
                sa.Column("created_at", sa.Float, nullable=False),
                sa.Column("command", sa.Text, nullable=False),
                sa.Column("status", sa.String(32), nullable=False),
                sa.Column("kind", sa.String(32), nullable=False, server_default="run"),
                sa.Column("plan", sa.Text),
                sa.Column("verdict", sa.String(64)),
                sa.Column("controller", sa.Text),          # host:pid of the process running it
                sa.Column("heartbeat_at", sa.Float))       # its last beat (controller/results/liveness.py)

variants = sa.Table("variants", metadata,
                    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
                    sa.Column("model", sa.Text, primary_key=True),
                    sa.Column("recipe", sa.Text, primary_key=True),
                    sa.Column("params", sa.Text, nullable=False),
                    sa.Column("sha256", sa.String(64), nullable=False),
                    sa.Column("size_bytes", sa.BigInteger, nullable=False),
                    sa.Column("accuracy", sa.Float),
                    sa.Column("duration_s", sa.Float, nullable=False),
                    sa.Column("details", sa.Text))

jobs = sa.Table("jobs", metadata,
                sa.Column("id", sa.String(64), primary_key=True),
                sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
                sa.Column("model", sa.Text, nullable=False),
                sa.Column("variant", sa.Text, nullable=False),
                sa.Column("device", sa.Text, nullable=False),
                sa.Column("backend", sa.String(64), nullable=False),
                sa.Column("artifact_sha256", sa.String(64), nullable=False),
                sa.Column("status", sa.String(32), nullable=False),
                sa.Column("failure_kind", sa.String(64)),
                sa.Column("failure_message", sa.Text),
                sa.Column("created_at", sa.Float, nullable=False),
                sa.Column("finished_at", sa.Float),
                sa.Column("target", sa.Text),
                sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))

_FLOAT_COLUMNS = (
    "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "cv", "fps", "load_ms",
    "first_inference_ms", "measure_seconds", "engine_build_ms", "device_accuracy", "avg_power_w", "idle_power_w",
    "energy_mj_per_inference", "fidelity_cosine", "fidelity_snr_db", "fidelity_top1_agreement",
)
results = sa.Table(
    "results", metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("measured_at", sa.Float, nullable=False),
    sa.Column("api_version", sa.String(32), nullable=False),   # the wire protocol the agent spoke
    sa.Column("device", sa.Text, nullable=False),
    sa.Column("backend", sa.String(64), nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("input_shapes", sa.Text, nullable=False),       # "images:1x3x640x640 sr:scalar"
    sa.Column("input_source", sa.Text, nullable=False),
    sa.Column("input_samples", sa.Integer, nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("streams", sa.Integer, nullable=False),
    sa.Column("latency_count", sa.BigInteger, nullable=False),
    *(sa.Column(name, sa.Float) for name in _FLOAT_COLUMNS),
    sa.Column("warmup_iterations", sa.Integer, nullable=False),
    sa.Column("peak_rss_bytes", sa.BigInteger, nullable=False),
    sa.Column("engine_cache_hit", sa.Boolean, nullable=False),
    sa.Column("accuracy_available", sa.Boolean, nullable=False),
    sa.Column("power_available", sa.Boolean, nullable=False),
    sa.Column("power_sensor", sa.Text, nullable=False),
    sa.Column("power_unavailable_reason", sa.Text, nullable=False),
    sa.Column("power_samples", sa.Integer, nullable=False),
    sa.Column("throttled", sa.Boolean, nullable=False),
    sa.Column("compute_separable", sa.Boolean, nullable=False),
    sa.Column("fidelity_unavailable_reason", sa.Text, nullable=False),
    sa.Column("stopped_by", sa.String(32), nullable=False),   # min-time, max-iterations, max-seconds
    sa.Column("samples_ns", sa.LargeBinary, nullable=False),
    sa.Column("compute_samples_ns", sa.LargeBinary, nullable=False),
    sa.Column("compute_latency", sa.Text, nullable=False),     # JSON: the compute-only LatencyStats
    sa.Column("fidelity", sa.Text, nullable=False),            # JSON: one object per output (inf/nan kept)
    sa.Column("fingerprint", sa.JSON, nullable=False),
    sa.Column("device_info", sa.JSON, nullable=False),
)


# A result's profiling pass (schema 4): what profiled it, and one row per runtime layer or kernel.
layer_profiles = sa.Table(
    "layer_profiles", metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("available", sa.Boolean, nullable=False),
    sa.Column("unavailable_reason", sa.Text, nullable=False),
    sa.Column("profiler", sa.Text, nullable=False),
    sa.Column("iterations", sa.Integer, nullable=False),
    sa.Column("dropped_iterations", sa.Integer, nullable=False),
    sa.Column("timing_unavailable_reason", sa.Text, nullable=False),
    sa.Column("placement_source", sa.Text, nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("profiled_median_us", sa.Float, nullable=False),
)
layers = sa.Table(
    "layers", metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),       # execution order
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("op_type", sa.Text, nullable=False),
    sa.Column("op_family", sa.String(64), nullable=False),
    sa.Column("placement", sa.Text, nullable=False),
    sa.Column("precision", sa.String(32), nullable=False),
    sa.Column("is_glue", sa.Boolean, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("timed", sa.Boolean, nullable=False),
    sa.Column("median_us", sa.Float),                           # NULL when the runtime gave no time
    sa.Column("p90_us", sa.Float),
    sa.Column("output_shapes", sa.Text, nullable=False),        # JSON list of "1x16x48x48"
    sa.Column("source_nodes", sa.Text, nullable=False),         # JSON list of source-graph node names
)


def layer_profile_rows(profile: LayerProfile) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    head = {key: value for key, value in asdict(profile).items() if key != "layers"}
    rows = [{**asdict(row), "position": i, "median_us": row.median_us if row.timed else None,
             "p90_us": row.p90_us if row.timed else None, "output_shapes": json.dumps(list(row.output_shapes)),
             "source_nodes": json.dumps(list(row.source_nodes))} for i, row in enumerate(profile.layers)]
    return head, rows


def layer_profile_from_rows(head: Any, rows: list[Any]) -> LayerProfile:
    layers = tuple(LayerRow(r.name, r.op_type, r.op_family, r.placement, r.precision, bool(r.is_glue), r.count,
                            bool(r.timed), _number(r.median_us), _number(r.p90_us),
                            tuple(json.loads(r.output_shapes)), tuple(json.loads(r.source_nodes))) for r in rows)
    return LayerProfile(bool(head.available), head.unavailable_reason, head.profiler, head.iterations,
                        head.dropped_iterations, layers, head.timing_unavailable_reason, head.placement_source,
                        head.notes, head.profiled_median_us)


def pack_samples(samples: tuple[int, ...]) -> bytes:
    return np.asarray(samples, dtype=_SAMPLE_DTYPE).tobytes()


def unpack_samples(blob: bytes) -> tuple[int, ...]:
    return tuple(np.frombuffer(blob, dtype=_SAMPLE_DTYPE).tolist())


def shapes_from_text(text: str) -> Shapes:
    """The inverse of input_plan.shapes_text: "images:1x3x640x640 sr:scalar"."""
    pairs = (item.rsplit(":", 1) for item in text.split())
    return tuple((name, () if dims == "scalar" else tuple(int(d) for d in dims.split("x"))) for name, dims in pairs)


def result_row(result: BenchmarkResult, device: str, measured_at: float) -> dict[str, Any]:
    lat, power, env = result.latency, result.power, result.environment
    board = worst(result.fidelity)
    return {
        "measured_at": measured_at, "api_version": result.device.protocol_version or "edgefarm.v1",
        "device": device, "backend": result.backend, "provider": result.provider,
        "input_shapes": shapes_text(result.input_shapes), "input_source": result.input_source,
        "input_samples": result.input_samples, "batch_size": result.batch_size, "streams": result.streams,
        "latency_count": lat.count, "p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms, "p95_ms": lat.p95_ms,
        "p99_ms": lat.p99_ms, "mean_ms": lat.mean_ms, "std_ms": lat.std_ms, "min_ms": lat.min_ms,
        "max_ms": lat.max_ms, "cv": lat.cv, "fps": result.fps, "load_ms": result.load_ms,
        "first_inference_ms": result.first_inference_ms, "measure_seconds": result.measure_seconds,
        "engine_build_ms": result.engine_build_ms,
        "device_accuracy": result.accuracy if result.accuracy_available else None,
        "avg_power_w": power.avg_power_w if power.available else None,
        "idle_power_w": power.idle_power_w if power.available else None,
        "energy_mj_per_inference": power.energy_per_inference_mj if power.available else None,
        "fidelity_cosine": board.cosine if board else None, "fidelity_snr_db": board.snr_db if board else None,
        "fidelity_top1_agreement": board.top1_agreement if board and board.classifier else None,
        "warmup_iterations": result.warmup_iterations, "peak_rss_bytes": result.peak_rss_bytes,
        "engine_cache_hit": result.engine_cache_hit, "accuracy_available": result.accuracy_available,
        "power_available": power.available, "power_sensor": power.sensor,
        "power_unavailable_reason": power.unavailable_reason, "power_samples": power.sample_count,
        "throttled": env.throttled, "compute_separable": result.compute_separable,
        "fidelity_unavailable_reason": result.fidelity_unavailable_reason, "stopped_by": result.stopped_by,
        "samples_ns": pack_samples(result.samples_ns), "compute_samples_ns": pack_samples(result.compute_samples_ns),
        "compute_latency": json.dumps(asdict(result.compute_latency)),
        "fidelity": json.dumps([asdict(f) for f in result.fidelity]),
        "fingerprint": _fingerprint_json(env), "device_info": asdict(result.device),
    }


def result_from_row(row: Any, job_id: str) -> BenchmarkResult:
    power = PowerSummary(bool(row.power_available), row.power_sensor, row.power_unavailable_reason,
                         _number(row.avg_power_w), _number(row.idle_power_w), _number(row.energy_mj_per_inference),
                         row.power_samples)
    return BenchmarkResult(
        job_id=job_id, backend=row.backend, provider=row.provider, samples_ns=unpack_samples(row.samples_ns),
        latency=LatencyStats(row.latency_count, row.min_ms, row.max_ms, row.mean_ms, row.std_ms, row.p50_ms,
                             row.p90_ms, row.p95_ms, row.p99_ms, row.cv),
        fps=row.fps, load_ms=row.load_ms, first_inference_ms=row.first_inference_ms,
        peak_rss_bytes=row.peak_rss_bytes, measure_seconds=row.measure_seconds,
        warmup_iterations=row.warmup_iterations, batch_size=row.batch_size, streams=row.streams,
        compute_separable=bool(row.compute_separable), compute_samples_ns=unpack_samples(row.compute_samples_ns),
        compute_latency=LatencyStats(**json.loads(row.compute_latency)), device=_device(row.device_info),
        power=power, environment=_fingerprint(row.fingerprint), accuracy_available=bool(row.accuracy_available),
        accuracy=_number(row.device_accuracy), engine_build_ms=row.engine_build_ms,
        engine_cache_hit=bool(row.engine_cache_hit), input_shapes=shapes_from_text(row.input_shapes),
        input_source=row.input_source, input_samples=row.input_samples,
        fidelity=tuple(OutputFidelity(**f) for f in json.loads(row.fidelity)),
        fidelity_unavailable_reason=row.fidelity_unavailable_reason, stopped_by=row.stopped_by)


def _number(value: float | None) -> float:
    return 0.0 if value is None else value


def _fingerprint_json(env: Fingerprint) -> dict:
    data = asdict(env)
    data["temps_start_c"], data["temps_end_c"] = dict(env.temps_start_c), dict(env.temps_end_c)
    data["versions"] = dict(env.versions)
    # JSON has no NaN: a sensor that read nothing is left out rather than stored as an invalid number
    for key in ("temps_start_c", "temps_end_c"):
        data[key] = {k: v for k, v in data[key].items() if math.isfinite(v)}
    return data


def _fingerprint(data: dict) -> Fingerprint:
    return Fingerprint(**{**data, "throttle_flags": tuple(data["throttle_flags"])})


def _device(data: dict) -> DeviceInfo:
    runtimes = tuple(RuntimeInfo(r["name"], r["version"], tuple(r["providers"])) for r in data["runtimes"])
    return DeviceInfo(**{**data, "runtimes": runtimes, "accelerators": tuple(data["accelerators"]),
                         "sensors": tuple(data["sensors"]),
                         "missing_runtimes": tuple(tuple(m) for m in data.get("missing_runtimes", ()))})
