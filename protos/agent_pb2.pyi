from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RuntimeInfo(_message.Message):
    __slots__ = ("name", "version", "providers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("hostname", "machine", "cpu_model", "cpu_cores", "ram_bytes", "os", "python_version", "runtimes", "accelerators", "sensors", "agent_version", "protocol_version", "missing_runtimes")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    RAM_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MISSING_RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    machine: str
    cpu_model: str
    cpu_cores: int
    ram_bytes: int
    os: str
    python_version: str
    runtimes: _containers.RepeatedCompositeFieldContainer[RuntimeInfo]
    accelerators: _containers.RepeatedScalarFieldContainer[str]
    sensors: _containers.RepeatedScalarFieldContainer[str]
    agent_version: str
    protocol_version: str
    missing_runtimes: _containers.RepeatedCompositeFieldContainer[MissingRuntime]
    def __init__(self, hostname: _Optional[str] = ..., machine: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., ram_bytes: _Optional[int] = ..., os: _Optional[str] = ..., python_version: _Optional[str] = ..., runtimes: _Optional[_Iterable[_Union[RuntimeInfo, _Mapping]]] = ..., accelerators: _Optional[_Iterable[str]] = ..., sensors: _Optional[_Iterable[str]] = ..., agent_version: _Optional[str] = ..., protocol_version: _Optional[str] = ..., missing_runtimes: _Optional[_Iterable[_Union[MissingRuntime, _Mapping]]] = ...) -> None: ...

class MissingRuntime(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class HasArtifactsRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class HasArtifactsResponse(_message.Message):
    __slots__ = ("present",)
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    present: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, present: _Optional[_Iterable[str]] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("sha256", "total_size", "data")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    total_size: int
    data: bytes
    def __init__(self, sha256: _Optional[str] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("sha256", "size", "already_present", "bytes_received")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    already_present: bool
    bytes_received: int
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., already_present: bool = ..., bytes_received: _Optional[int] = ...) -> None: ...

class WarmupPolicy(_message.Message):
    __slots__ = ("min_iterations", "min_seconds")
    MIN_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    min_iterations: int
    min_seconds: float
    def __init__(self, min_iterations: _Optional[int] = ..., min_seconds: _Optional[float] = ...) -> None: ...

class MeasurePolicy(_message.Message):
    __slots__ = ("min_iterations", "min_seconds", "max_iterations", "max_seconds")
    MIN_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    min_iterations: int
    min_seconds: float
    max_iterations: int
    max_seconds: float
    def __init__(self, min_iterations: _Optional[int] = ..., min_seconds: _Optional[float] = ..., max_iterations: _Optional[int] = ..., max_seconds: _Optional[float] = ...) -> None: ...

class BenchmarkSpec(_message.Message):
    __slots__ = ("job_id", "artifact_sha256", "backend", "threads", "execution_provider", "delegate", "precision", "batch_size", "warmup", "measure", "timeout_seconds", "eval_artifact_sha256", "seed", "streams", "dla_core", "sparsity", "cuda_graph", "input_shapes", "inputs_artifact_sha256", "fidelity_artifact_sha256", "profile", "profile_iterations", "benchmark_model_path", "device", "performance_hint")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DELEGATE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    MEASURE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVAL_ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    DLA_CORE_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    CUDA_GRAPH_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    FIDELITY_ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_HINT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    artifact_sha256: str
    backend: str
    threads: int
    execution_provider: str
    delegate: str
    precision: str
    batch_size: int
    warmup: WarmupPolicy
    measure: MeasurePolicy
    timeout_seconds: float
    eval_artifact_sha256: str
    seed: int
    streams: int
    dla_core: int
    sparsity: bool
    cuda_graph: bool
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    inputs_artifact_sha256: str
    fidelity_artifact_sha256: str
    profile: bool
    profile_iterations: int
    benchmark_model_path: str
    device: str
    performance_hint: str
    def __init__(self, job_id: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., backend: _Optional[str] = ..., threads: _Optional[int] = ..., execution_provider: _Optional[str] = ..., delegate: _Optional[str] = ..., precision: _Optional[str] = ..., batch_size: _Optional[int] = ..., warmup: _Optional[_Union[WarmupPolicy, _Mapping]] = ..., measure: _Optional[_Union[MeasurePolicy, _Mapping]] = ..., timeout_seconds: _Optional[float] = ..., eval_artifact_sha256: _Optional[str] = ..., seed: _Optional[int] = ..., streams: _Optional[int] = ..., dla_core: _Optional[int] = ..., sparsity: bool = ..., cuda_graph: bool = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., inputs_artifact_sha256: _Optional[str] = ..., fidelity_artifact_sha256: _Optional[str] = ..., profile: bool = ..., profile_iterations: _Optional[int] = ..., benchmark_model_path: _Optional[str] = ..., device: _Optional[str] = ..., performance_hint: _Optional[str] = ...) -> None: ...

class InputShape(_message.Message):
    __slots__ = ("name", "dims")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class OutputFidelity(_message.Message):
    __slots__ = ("name", "cosine", "snr_db", "max_abs_error", "classifier", "top1_agreement", "top5_agreement", "samples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COSINE_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    TOP5_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    cosine: float
    snr_db: float
    max_abs_error: float
    classifier: bool
    top1_agreement: float
    top5_agreement: float
    samples: int
    def __init__(self, name: _Optional[str] = ..., cosine: _Optional[float] = ..., snr_db: _Optional[float] = ..., max_abs_error: _Optional[float] = ..., classifier: bool = ..., top1_agreement: _Optional[float] = ..., top5_agreement: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("phase", "fraction", "message")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    fraction: float
    message: str
    def __init__(self, phase: _Optional[str] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class LatencyStats(_message.Message):
    __slots__ = ("count", "min_ms", "max_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "cv")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    count: int
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    cv: float
    def __init__(self, count: _Optional[int] = ..., min_ms: _Optional[float] = ..., max_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., cv: _Optional[float] = ...) -> None: ...

class PowerSummary(_message.Message):
    __slots__ = ("available", "sensor", "unavailable_reason", "avg_power_w", "idle_power_w", "energy_per_inference_mj", "sample_count")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    AVG_POWER_W_FIELD_NUMBER: _ClassVar[int]
    IDLE_POWER_W_FIELD_NUMBER: _ClassVar[int]
    ENERGY_PER_INFERENCE_MJ_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    available: bool
    sensor: str
    unavailable_reason: str
    avg_power_w: float
    idle_power_w: float
    energy_per_inference_mj: float
    sample_count: int
    def __init__(self, available: bool = ..., sensor: _Optional[str] = ..., unavailable_reason: _Optional[str] = ..., avg_power_w: _Optional[float] = ..., idle_power_w: _Optional[float] = ..., energy_per_inference_mj: _Optional[float] = ..., sample_count: _Optional[int] = ...) -> None: ...

class EnvironmentFingerprint(_message.Message):
    __slots__ = ("cpu_governor", "cpu_cur_freq_khz", "cpu_max_freq_khz", "nvpmodel_mode", "jetson_clocks", "temps_start_c", "temps_end_c", "throttled", "throttle_flags", "versions")
    class TempsStartCEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TempsEndCEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CPU_GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    CPU_CUR_FREQ_KHZ_FIELD_NUMBER: _ClassVar[int]
    CPU_MAX_FREQ_KHZ_FIELD_NUMBER: _ClassVar[int]
    NVPMODEL_MODE_FIELD_NUMBER: _ClassVar[int]
    JETSON_CLOCKS_FIELD_NUMBER: _ClassVar[int]
    TEMPS_START_C_FIELD_NUMBER: _ClassVar[int]
    TEMPS_END_C_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    cpu_governor: str
    cpu_cur_freq_khz: int
    cpu_max_freq_khz: int
    nvpmodel_mode: str
    jetson_clocks: str
    temps_start_c: _containers.ScalarMap[str, float]
    temps_end_c: _containers.ScalarMap[str, float]
    throttled: bool
    throttle_flags: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.ScalarMap[str, str]
    def __init__(self, cpu_governor: _Optional[str] = ..., cpu_cur_freq_khz: _Optional[int] = ..., cpu_max_freq_khz: _Optional[int] = ..., nvpmodel_mode: _Optional[str] = ..., jetson_clocks: _Optional[str] = ..., temps_start_c: _Optional[_Mapping[str, float]] = ..., temps_end_c: _Optional[_Mapping[str, float]] = ..., throttled: bool = ..., throttle_flags: _Optional[_Iterable[str]] = ..., versions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("job_id", "backend", "provider", "samples_ns", "latency", "compute_separable", "compute_samples_ns", "compute_latency", "fps", "load_ms", "first_inference_ms", "peak_rss_bytes", "measure_seconds", "warmup_iterations", "batch_size", "device", "power", "environment", "accuracy_available", "accuracy", "streams", "engine_build_ms", "engine_cache_hit", "input_shapes", "input_source", "input_samples", "fidelity", "fidelity_unavailable_reason", "stopped_by", "layer_profile")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_NS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SEPARABLE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SAMPLES_NS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEASURE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    POWER_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_BUILD_MS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FIDELITY_FIELD_NUMBER: _ClassVar[int]
    FIDELITY_UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    STOPPED_BY_FIELD_NUMBER: _ClassVar[int]
    LAYER_PROFILE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    backend: str
    provider: str
    samples_ns: _containers.RepeatedScalarFieldContainer[int]
    latency: LatencyStats
    compute_separable: bool
    compute_samples_ns: _containers.RepeatedScalarFieldContainer[int]
    compute_latency: LatencyStats
    fps: float
    load_ms: float
    first_inference_ms: float
    peak_rss_bytes: int
    measure_seconds: float
    warmup_iterations: int
    batch_size: int
    device: DeviceInfo
    power: PowerSummary
    environment: EnvironmentFingerprint
    accuracy_available: bool
    accuracy: float
    streams: int
    engine_build_ms: float
    engine_cache_hit: bool
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    input_source: str
    input_samples: int
    fidelity: _containers.RepeatedCompositeFieldContainer[OutputFidelity]
    fidelity_unavailable_reason: str
    stopped_by: str
    layer_profile: LayerProfile
    def __init__(self, job_id: _Optional[str] = ..., backend: _Optional[str] = ..., provider: _Optional[str] = ..., samples_ns: _Optional[_Iterable[int]] = ..., latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., compute_separable: bool = ..., compute_samples_ns: _Optional[_Iterable[int]] = ..., compute_latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., fps: _Optional[float] = ..., load_ms: _Optional[float] = ..., first_inference_ms: _Optional[float] = ..., peak_rss_bytes: _Optional[int] = ..., measure_seconds: _Optional[float] = ..., warmup_iterations: _Optional[int] = ..., batch_size: _Optional[int] = ..., device: _Optional[_Union[DeviceInfo, _Mapping]] = ..., power: _Optional[_Union[PowerSummary, _Mapping]] = ..., environment: _Optional[_Union[EnvironmentFingerprint, _Mapping]] = ..., accuracy_available: bool = ..., accuracy: _Optional[float] = ..., streams: _Optional[int] = ..., engine_build_ms: _Optional[float] = ..., engine_cache_hit: bool = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., input_source: _Optional[str] = ..., input_samples: _Optional[int] = ..., fidelity: _Optional[_Iterable[_Union[OutputFidelity, _Mapping]]] = ..., fidelity_unavailable_reason: _Optional[str] = ..., stopped_by: _Optional[str] = ..., layer_profile: _Optional[_Union[LayerProfile, _Mapping]] = ...) -> None: ...

class LayerRow(_message.Message):
    __slots__ = ("name", "op_type", "op_family", "placement", "precision", "is_glue", "count", "timed", "median_us", "p90_us", "output_shapes", "source_nodes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    OP_FAMILY_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    IS_GLUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMED_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_US_FIELD_NUMBER: _ClassVar[int]
    P90_US_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NODES_FIELD_NUMBER: _ClassVar[int]
    name: str
    op_type: str
    op_family: str
    placement: str
    precision: str
    is_glue: bool
    count: int
    timed: bool
    median_us: float
    p90_us: float
    output_shapes: _containers.RepeatedScalarFieldContainer[str]
    source_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., op_type: _Optional[str] = ..., op_family: _Optional[str] = ..., placement: _Optional[str] = ..., precision: _Optional[str] = ..., is_glue: bool = ..., count: _Optional[int] = ..., timed: bool = ..., median_us: _Optional[float] = ..., p90_us: _Optional[float] = ..., output_shapes: _Optional[_Iterable[str]] = ..., source_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class LayerProfile(_message.Message):
    __slots__ = ("available", "unavailable_reason", "profiler", "iterations", "dropped_iterations", "layers", "timing_unavailable_reason", "placement_source", "notes", "profiled_median_us")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    PROFILER_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TIMING_UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    PROFILED_MEDIAN_US_FIELD_NUMBER: _ClassVar[int]
    available: bool
    unavailable_reason: str
    profiler: str
    iterations: int
    dropped_iterations: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerRow]
    timing_unavailable_reason: str
    placement_source: str
    notes: str
    profiled_median_us: float
    def __init__(self, available: bool = ..., unavailable_reason: _Optional[str] = ..., profiler: _Optional[str] = ..., iterations: _Optional[int] = ..., dropped_iterations: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerRow, _Mapping]]] = ..., timing_unavailable_reason: _Optional[str] = ..., placement_source: _Optional[str] = ..., notes: _Optional[str] = ..., profiled_median_us: _Optional[float] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("kind", "message")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Failure.Kind]
        BAD_INPUT: _ClassVar[Failure.Kind]
        BACKEND_CRASH: _ClassVar[Failure.Kind]
        TIMEOUT: _ClassVar[Failure.Kind]
        INFRASTRUCTURE: _ClassVar[Failure.Kind]
    KIND_UNSPECIFIED: Failure.Kind
    BAD_INPUT: Failure.Kind
    BACKEND_CRASH: Failure.Kind
    TIMEOUT: Failure.Kind
    INFRASTRUCTURE: Failure.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: Failure.Kind
    message: str
    def __init__(self, kind: _Optional[_Union[Failure.Kind, str]] = ..., message: _Optional[str] = ...) -> None: ...

class BenchmarkEvent(_message.Message):
    __slots__ = ("progress", "result", "failure")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: Result
    failure: Failure
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthStatus(_message.Message):
    __slots__ = ("serving", "busy", "disk_free_bytes", "cache_bytes", "artifacts", "agent_version", "uptime_seconds", "bytes_received", "engine_builds", "engine_cache_hits", "jobs_run")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ENGINE_BUILDS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    JOBS_RUN_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    busy: bool
    disk_free_bytes: int
    cache_bytes: int
    artifacts: int
    agent_version: str
    uptime_seconds: float
    bytes_received: int
    engine_builds: int
    engine_cache_hits: int
    jobs_run: int
    def __init__(self, serving: bool = ..., busy: bool = ..., disk_free_bytes: _Optional[int] = ..., cache_bytes: _Optional[int] = ..., artifacts: _Optional[int] = ..., agent_version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., bytes_received: _Optional[int] = ..., engine_builds: _Optional[int] = ..., engine_cache_hits: _Optional[int] = ..., jobs_run: _Optional[int] = ...) -> None: ...
