"""Records ↔ protobuf messages: the controller's one conversion point with the wire contract.

Only this module and the client import the generated code. Proto3 cannot tell "unset" from zero,
so the conversions settle the wire's defaults here (a batch size or stream count of 0 means 1).
"""
from __future__ import annotations

from collections.abc import Iterable

from edgefarm.controller.agents.records import (
    BenchmarkResult,
    DeviceInfo,
    Failure,
    Fingerprint,
    HealthStatus,
    JobSpec,
    LatencyStats,
    LayerProfile,
    LayerRow,
    OutputFidelity,
    PowerSummary,
    Progress,
    RuntimeInfo,
    Shapes,
)
from edgefarm.protos import agent_pb2 as pb

Event = Progress | BenchmarkResult | Failure


def spec_to_pb(spec: JobSpec) -> pb.BenchmarkSpec:
    message = pb.BenchmarkSpec(
        job_id=spec.job_id, artifact_sha256=spec.artifact_sha256, backend=spec.backend, threads=spec.threads,
        execution_provider=spec.execution_provider, delegate=spec.delegate, precision=spec.precision,
        batch_size=spec.batch_size,
        warmup=pb.WarmupPolicy(min_iterations=spec.warmup_iterations, min_seconds=spec.warmup_seconds),
        measure=pb.MeasurePolicy(min_iterations=spec.min_iterations, min_seconds=spec.min_seconds,
                                 max_iterations=spec.max_iterations, max_seconds=spec.max_seconds),
        timeout_seconds=spec.timeout_seconds, eval_artifact_sha256=spec.eval_artifact_sha256, seed=spec.seed,
        streams=spec.streams, sparsity=spec.sparsity, cuda_graph=spec.cuda_graph,
        input_shapes=[pb.InputShape(name=name, dims=list(dims)) for name, dims in spec.input_shapes],
        inputs_artifact_sha256=spec.inputs_artifact_sha256, fidelity_artifact_sha256=spec.fidelity_artifact_sha256,
        profile=spec.profile, profile_iterations=spec.profile_iterations,
        benchmark_model_path=spec.benchmark_model_path, device=spec.device, performance_hint=spec.performance_hint)
    if spec.dla_core is not None:
        message.dla_core = spec.dla_core
    return message


def spec_from_pb(message: pb.BenchmarkSpec) -> JobSpec:
    w, m = message.warmup, message.measure
    return JobSpec(
        job_id=message.job_id, artifact_sha256=message.artifact_sha256, backend=message.backend,
        warmup_iterations=w.min_iterations, warmup_seconds=w.min_seconds, min_iterations=m.min_iterations,
        min_seconds=m.min_seconds, max_iterations=m.max_iterations, max_seconds=m.max_seconds,
        timeout_seconds=message.timeout_seconds, threads=message.threads,
        execution_provider=message.execution_provider, delegate=message.delegate, precision=message.precision,
        batch_size=message.batch_size or 1, eval_artifact_sha256=message.eval_artifact_sha256, seed=message.seed,
        streams=message.streams or 1, dla_core=message.dla_core if message.HasField("dla_core") else None,
        sparsity=message.sparsity, cuda_graph=message.cuda_graph, input_shapes=_shapes(message.input_shapes),
        inputs_artifact_sha256=message.inputs_artifact_sha256,
        fidelity_artifact_sha256=message.fidelity_artifact_sha256, profile=message.profile,
        profile_iterations=message.profile_iterations, benchmark_model_path=message.benchmark_model_path,
        device=message.device, performance_hint=message.performance_hint)


def device_from_pb(message: pb.DeviceInfo) -> DeviceInfo:
    runtimes = tuple(RuntimeInfo(r.name, r.version, tuple(r.providers)) for r in message.runtimes)
    return DeviceInfo(message.hostname, message.machine, message.cpu_model, message.cpu_cores, message.ram_bytes,
                      message.os, message.python_version, runtimes, tuple(message.accelerators),
                      tuple(message.sensors), message.agent_version, message.protocol_version,
                      tuple((m.name, m.reason) for m in message.missing_runtimes))


def device_to_pb(device: DeviceInfo) -> pb.DeviceInfo:
    runtimes = [pb.RuntimeInfo(name=r.name, version=r.version, providers=list(r.providers)) for r in device.runtimes]
    return pb.DeviceInfo(hostname=device.hostname, machine=device.machine, cpu_model=device.cpu_model,
                         cpu_cores=device.cpu_cores, ram_bytes=device.ram_bytes, os=device.os,
                         python_version=device.python_version, runtimes=runtimes,
                         accelerators=list(device.accelerators), sensors=list(device.sensors),
                         agent_version=device.agent_version, protocol_version=device.protocol_version,
                         missing_runtimes=[pb.MissingRuntime(name=name, reason=reason)
                                           for name, reason in device.missing_runtimes])


def health_from_pb(message: pb.HealthStatus) -> HealthStatus:
    return HealthStatus(message.serving, message.busy, message.disk_free_bytes, message.cache_bytes,
                        message.artifacts, message.agent_version, message.uptime_seconds, message.bytes_received,
                        message.engine_builds, message.engine_cache_hits, message.jobs_run)


def result_from_pb(message: pb.Result) -> BenchmarkResult:
    return BenchmarkResult(
        job_id=message.job_id, backend=message.backend, provider=message.provider,
        samples_ns=tuple(message.samples_ns), latency=_latency(message.latency), fps=message.fps,
        load_ms=message.load_ms, first_inference_ms=message.first_inference_ms,
        peak_rss_bytes=message.peak_rss_bytes, measure_seconds=message.measure_seconds,
        warmup_iterations=message.warmup_iterations, batch_size=message.batch_size or 1,
        streams=message.streams or 1, compute_separable=message.compute_separable,
        compute_samples_ns=tuple(message.compute_samples_ns), compute_latency=_latency(message.compute_latency),
        device=device_from_pb(message.device), power=_power(message.power),
        environment=_fingerprint(message.environment), accuracy_available=message.accuracy_available,
        accuracy=message.accuracy, engine_build_ms=message.engine_build_ms,
        engine_cache_hit=message.engine_cache_hit, input_shapes=_shapes(message.input_shapes),
        input_source=message.input_source, input_samples=message.input_samples,
        fidelity=tuple(_fidelity(f) for f in message.fidelity),
        fidelity_unavailable_reason=message.fidelity_unavailable_reason, stopped_by=message.stopped_by,
        layer_profile=layer_profile_from_pb(message.layer_profile) if message.HasField("layer_profile") else None)


def result_to_pb(result: BenchmarkResult) -> pb.Result:
    """For tests and tools that play an agent; the controller itself only reads results."""
    env, power = result.environment, result.power
    return pb.Result(
        job_id=result.job_id, backend=result.backend, provider=result.provider, samples_ns=list(result.samples_ns),
        latency=pb.LatencyStats(**vars(result.latency)), fps=result.fps, load_ms=result.load_ms,
        first_inference_ms=result.first_inference_ms, peak_rss_bytes=result.peak_rss_bytes,
        measure_seconds=result.measure_seconds, warmup_iterations=result.warmup_iterations,
        batch_size=result.batch_size, streams=result.streams, compute_separable=result.compute_separable,
        compute_samples_ns=list(result.compute_samples_ns),
        compute_latency=pb.LatencyStats(**vars(result.compute_latency)), device=device_to_pb(result.device),
        power=pb.PowerSummary(**vars(power)),
        environment=pb.EnvironmentFingerprint(
            cpu_governor=env.cpu_governor, cpu_cur_freq_khz=env.cpu_cur_freq_khz,
            cpu_max_freq_khz=env.cpu_max_freq_khz, nvpmodel_mode=env.nvpmodel_mode,
            jetson_clocks=env.jetson_clocks, temps_start_c=dict(env.temps_start_c),
            temps_end_c=dict(env.temps_end_c), throttled=env.throttled, throttle_flags=list(env.throttle_flags),
            versions=dict(env.versions)),
        accuracy_available=result.accuracy_available, accuracy=result.accuracy,
        engine_build_ms=result.engine_build_ms, engine_cache_hit=result.engine_cache_hit,
        input_shapes=[pb.InputShape(name=name, dims=list(dims)) for name, dims in result.input_shapes],
        input_source=result.input_source, input_samples=result.input_samples,
        fidelity=[pb.OutputFidelity(**vars(f)) for f in result.fidelity],
        fidelity_unavailable_reason=result.fidelity_unavailable_reason, stopped_by=result.stopped_by,
        layer_profile=layer_profile_to_pb(result.layer_profile) if result.layer_profile is not None else None)


def layer_profile_from_pb(message: pb.LayerProfile) -> LayerProfile:
    rows = tuple(LayerRow(r.name, r.op_type, r.op_family, r.placement, r.precision, r.is_glue, r.count, r.timed,
                          r.median_us, r.p90_us, tuple(r.output_shapes), tuple(r.source_nodes)) for r in message.layers)
    return LayerProfile(message.available, message.unavailable_reason, message.profiler, message.iterations,
                        message.dropped_iterations, rows, message.timing_unavailable_reason,
                        message.placement_source, message.notes, message.profiled_median_us)


def layer_profile_to_pb(profile: LayerProfile) -> pb.LayerProfile:
    rows = [pb.LayerRow(**{**vars(r), "output_shapes": list(r.output_shapes), "source_nodes": list(r.source_nodes)})
            for r in profile.layers]
    return pb.LayerProfile(**{**vars(profile), "layers": rows})


def result_from_bytes(blob: bytes) -> BenchmarkResult:
    """A Result as the first results store kept it (a serialized message); read by its migration."""
    return result_from_pb(pb.Result.FromString(blob))


def event_from_pb(message: pb.BenchmarkEvent) -> Event:
    kind = message.WhichOneof("event")
    if kind == "progress":
        return Progress(message.progress.phase, message.progress.fraction, message.progress.message)
    if kind == "result":
        return result_from_pb(message.result)
    return failure_from_pb(message.failure)


def failure_from_pb(message: pb.Failure) -> Failure:
    """Failure kinds as the store and console spell them: BAD_INPUT -> bad-input."""
    return Failure(pb.Failure.Kind.Name(message.kind).lower().replace("_", "-"), message.message)


def _latency(message: pb.LatencyStats) -> LatencyStats:
    return LatencyStats(message.count, message.min_ms, message.max_ms, message.mean_ms, message.std_ms,
                        message.p50_ms, message.p90_ms, message.p95_ms, message.p99_ms, message.cv)


def _power(message: pb.PowerSummary) -> PowerSummary:
    return PowerSummary(message.available, message.sensor, message.unavailable_reason, message.avg_power_w,
                        message.idle_power_w, message.energy_per_inference_mj, message.sample_count)


def _fingerprint(message: pb.EnvironmentFingerprint) -> Fingerprint:
    return Fingerprint(message.cpu_governor, message.cpu_cur_freq_khz, message.cpu_max_freq_khz,
                       message.nvpmodel_mode, message.jetson_clocks, dict(message.temps_start_c),
                       dict(message.temps_end_c), message.throttled, tuple(message.throttle_flags),
                       dict(message.versions))


def _fidelity(message: pb.OutputFidelity) -> OutputFidelity:
    return OutputFidelity(message.name, message.cosine, message.snr_db, message.max_abs_error, message.classifier,
                          message.top1_agreement, message.top5_agreement, message.samples)


def _shapes(messages: Iterable[pb.InputShape]) -> Shapes:
    return tuple((m.name, tuple(m.dims)) for m in messages)
