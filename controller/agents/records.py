"""What crosses the controller's boundaries, as frozen typed records.

The store, regression, reports, farm and canary work on these, never on generated protobuf
messages: `controller/agents/wire.py` converts at the client's edge, so a new protocol version
changes that one module and leaves the results schema alone. Field names follow the wire
contract (protos/agent.proto) so a reader can map one onto the other.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgefarm.agent.fidelity import OutputFidelity
from edgefarm.agent.profiling.records import LayerProfile, LayerRow

__all__ = [
    "BenchmarkResult", "DeviceInfo", "Failure", "Fingerprint", "HealthStatus", "JobSpec", "LatencyStats",
    "LayerProfile", "LayerRow", "OutputFidelity", "PowerSummary", "Progress", "RuntimeInfo", "Shapes",
]

Shapes = tuple[tuple[str, tuple[int, ...]], ...]   # (input name, dims) in the model's input order


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    version: str
    providers: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceInfo:
    """What a board's agent says it is (Describe)."""

    hostname: str = ""
    machine: str = ""
    cpu_model: str = ""
    cpu_cores: int = 0
    ram_bytes: int = 0
    os: str = ""
    python_version: str = ""
    runtimes: tuple[RuntimeInfo, ...] = ()
    accelerators: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    agent_version: str = ""
    protocol_version: str = ""
    missing_runtimes: tuple[tuple[str, str], ...] = ()   # (backend, why it cannot run here)

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(runtime.name for runtime in self.runtimes)

    def missing_reason(self, backend: str) -> str:
        """Why `backend` cannot run on this board, as its agent says; "" when the agent does not say."""
        return dict(self.missing_runtimes).get(backend, "")


@dataclass(frozen=True)
class HealthStatus:
    serving: bool = False
    busy: bool = False
    disk_free_bytes: int = 0
    cache_bytes: int = 0
    artifacts: int = 0
    agent_version: str = ""
    uptime_seconds: float = 0.0
    bytes_received: int = 0
    engine_builds: int = 0
    engine_cache_hits: int = 0
    jobs_run: int = 0


@dataclass(frozen=True)
class JobSpec:
    """One benchmark job as the board receives it. Iterations and seconds are explicit: a zero means zero."""

    job_id: str
    artifact_sha256: str
    backend: str
    warmup_iterations: int = 10
    warmup_seconds: float = 0.5
    min_iterations: int = 10
    min_seconds: float = 3.0
    max_iterations: int = 100_000
    max_seconds: float = 60.0
    timeout_seconds: float = 600.0
    threads: int = 0
    execution_provider: str = ""
    delegate: str = ""
    precision: str = ""
    batch_size: int = 1
    eval_artifact_sha256: str = ""
    seed: int = 0
    streams: int = 1
    dla_core: int | None = None
    sparsity: bool = False
    cuda_graph: bool = False
    input_shapes: Shapes = ()
    inputs_artifact_sha256: str = ""
    fidelity_artifact_sha256: str = ""
    profile: bool = False               # a separate per-layer profiling pass after the headline measurement
    profile_iterations: int = 0         # 0: the agent's default
    benchmark_model_path: str = ""      # LiteRT: a benchmark_model binary on the board, for per-op time
    device: str = ""                    # OpenVINO: the device plugin (CPU, GPU, NPU); "" = CPU
    performance_hint: str = ""          # OpenVINO: latency | throughput; "" = latency


@dataclass(frozen=True)
class LatencyStats:
    count: int = 0
    min_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    std_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    cv: float = 0.0


@dataclass(frozen=True)
class PowerSummary:
    available: bool = False
    sensor: str = ""
    unavailable_reason: str = ""
    avg_power_w: float = 0.0
    idle_power_w: float = 0.0
    energy_per_inference_mj: float = 0.0
    sample_count: int = 0


@dataclass(frozen=True)
class Fingerprint:
    """The board's state around a measurement: settings that decide speed, and what changed during it."""

    cpu_governor: str = ""
    cpu_cur_freq_khz: int = 0
    cpu_max_freq_khz: int = 0
    nvpmodel_mode: str = ""
    jetson_clocks: str = ""
    temps_start_c: Mapping[str, float] = field(default_factory=dict)
    temps_end_c: Mapping[str, float] = field(default_factory=dict)
    throttled: bool = False
    throttle_flags: tuple[str, ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)   # runtime, driver and agent versions


@dataclass(frozen=True)
class BenchmarkResult:
    """One measured job: latency statistics with the raw samples behind them, and its conditions."""

    job_id: str
    backend: str
    provider: str
    samples_ns: tuple[int, ...]
    latency: LatencyStats
    fps: float
    load_ms: float = 0.0
    first_inference_ms: float = 0.0
    peak_rss_bytes: int = 0
    measure_seconds: float = 0.0
    warmup_iterations: int = 0
    batch_size: int = 1
    streams: int = 1
    compute_separable: bool = False
    compute_samples_ns: tuple[int, ...] = ()
    compute_latency: LatencyStats = LatencyStats()
    device: DeviceInfo = DeviceInfo()
    power: PowerSummary = PowerSummary()
    environment: Fingerprint = Fingerprint()
    accuracy_available: bool = False
    accuracy: float = 0.0                  # on-device top-1 over the eval artifact
    engine_build_ms: float = 0.0
    engine_cache_hit: bool = False
    input_shapes: Shapes = ()              # the shapes every input really ran at
    input_source: str = ""                 # "synthetic", "inputs:SHA256"; "" from an agent before v1.1
    input_samples: int = 0
    fidelity: tuple[OutputFidelity, ...] = ()
    fidelity_unavailable_reason: str = ""
    stopped_by: str = ""                   # min-time, max-iterations, max-seconds; "" from an older agent
    layer_profile: LayerProfile | None = None   # the profiling pass, when the job asked for one


@dataclass(frozen=True)
class Failure:
    kind: str        # bad-input, backend-crash, timeout, infrastructure, ...
    message: str


@dataclass(frozen=True)
class Progress:
    phase: str
    fraction: float
    message: str = ""
