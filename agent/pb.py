"""Conversions between the agent's domain records and the wire messages."""
from __future__ import annotations

from typing import Sequence

from edgefarm.agent.fidelity import OutputFidelity
from edgefarm.agent.fingerprint import EnvironmentFingerprint, throttled_between
from edgefarm.agent.profiling.records import LayerProfile
from edgefarm.agent.sensors.monitor import PowerSummary
from edgefarm.agent.stats import LatencyStats
from edgefarm.protos import agent_pb2 as pb


def stats_to_pb(samples_ns: Sequence[int]) -> pb.LatencyStats:
    s = LatencyStats.from_samples_ns(samples_ns)
    return pb.LatencyStats(count=s.count, min_ms=s.min_ms, max_ms=s.max_ms, mean_ms=s.mean_ms,
                           std_ms=s.std_ms, p50_ms=s.p50_ms, p90_ms=s.p90_ms, p95_ms=s.p95_ms,
                           p99_ms=s.p99_ms, cv=s.cv)


def power_to_pb(p: PowerSummary) -> pb.PowerSummary:
    return pb.PowerSummary(available=p.available, sensor=p.sensor, unavailable_reason=p.unavailable_reason,
                           avg_power_w=p.avg_power_w, idle_power_w=p.idle_power_w,
                           energy_per_inference_mj=p.energy_per_inference_mj, sample_count=p.sample_count)


def fingerprint_to_pb(start: EnvironmentFingerprint, end: EnvironmentFingerprint,
                      agent_version: str) -> pb.EnvironmentFingerprint:
    """Clocks and governor as seen at the start; throttled if it showed at either end or a
    throttle counter rose during the run; flags as they stand at the end."""
    fp = pb.EnvironmentFingerprint(
        cpu_governor=start.cpu_governor, cpu_cur_freq_khz=start.cpu_cur_freq_khz,
        cpu_max_freq_khz=start.cpu_max_freq_khz, nvpmodel_mode=start.nvpmodel_mode,
        jetson_clocks=start.jetson_clocks, throttled=throttled_between(start, end),
        throttle_flags=sorted(end.throttle_flags))
    fp.temps_start_c.update(start.temps_c)
    fp.temps_end_c.update(end.temps_c)
    fp.versions["agent"] = agent_version
    return fp


def progress_event(phase: str, fraction: float, message: str = "") -> pb.BenchmarkEvent:
    return pb.BenchmarkEvent(progress=pb.Progress(phase=phase, fraction=fraction, message=message))


def failure_event(kind: int, message: str) -> pb.BenchmarkEvent:
    return pb.BenchmarkEvent(failure=pb.Failure(kind=kind, message=message))


def fidelity_to_pb(f: OutputFidelity) -> pb.OutputFidelity:
    return pb.OutputFidelity(name=f.name, cosine=f.cosine, snr_db=f.snr_db, max_abs_error=f.max_abs_error,
                             classifier=f.classifier, top1_agreement=f.top1_agreement,
                             top5_agreement=f.top5_agreement, samples=f.samples)


def layer_profile_to_pb(p: LayerProfile) -> pb.LayerProfile:
    rows = [pb.LayerRow(name=r.name, op_type=r.op_type, op_family=r.op_family, placement=r.placement,
                        precision=r.precision, is_glue=r.is_glue, count=r.count, timed=r.timed,
                        median_us=r.median_us, p90_us=r.p90_us, output_shapes=list(r.output_shapes),
                        source_nodes=list(r.source_nodes)) for r in p.layers]
    return pb.LayerProfile(available=p.available, unavailable_reason=p.unavailable_reason, profiler=p.profiler,
                           iterations=p.iterations, dropped_iterations=p.dropped_iterations, layers=rows,
                           timing_unavailable_reason=p.timing_unavailable_reason,
                           placement_source=p.placement_source, notes=p.notes,
                           profiled_median_us=p.profiled_median_us)
