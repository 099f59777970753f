"""TensorRT backend: ONNX -> engine (FP32 / FP16 / INT8, on the GPU or a DLA core), cached, run with
CUDA-event timing.

Build: TensorRT's ONNX parser reads the artifact; precision, DLA core, 2:4 sparsity and batch size come
from BackendOptions. INT8 takes either a QDQ model (explicit quantization: the INT8 flag alone) or, for
a float model, a calibration .npz (`x`) fed through an entropy calibrator (implicit quantization:
deprecated since TensorRT 10.1, still the only way on JetPack 5's TensorRT 8.5). A float model asked
for INT8 without calibration data is refused rather than built with made-up ranges. A dynamic batch
dimension gets an optimization profile pinned at the job's batch size. The serialized engine goes
into the agent's engine cache, so a re-run deserializes it and builds nothing.

Run: inputs are copied into pinned host buffers, then H2D, enqueue, D2H on one stream. CUDA events
around the enqueue give the GPU compute time, perf_counter_ns around all of it the end-to-end host
time (compute_separable). With cuda_graph the enqueue is captured once and replayed.

Versions: TensorRT 8.5 added named-tensor I/O (set_tensor_address + execute_async_v3) and 10.0
removed the binding API (bindings list + execute_async_v2), which is all 8.0-8.4 have (JetPack 5.0.2
ships 8.4.1). io_api() picks by version.
"""
from __future__ import annotations

import glob
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence, Tuple

import numpy as np

from edgefarm.agent import shapes
from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec, Timing
from edgefarm.agent.cuda_device import CudaDevice, CudaUnavailableError, open_cuda_device
from edgefarm.agent.engine_cache import EngineCache, EngineKey, artifact_sha256, collect_l4t_release, key_flags

NAME = "tensorrt"
PRECISIONS = ("fp32", "fp16", "int8")
DLA_PRECISIONS = ("fp16", "int8")   # DLA has no FP32 kernels
IO_TENSOR_ADDRESS = "tensor-address"    # TensorRT 8.5+: set_tensor_address + execute_async_v3
IO_BINDINGS = "bindings"                # TensorRT 8.0-8.4: bindings list + execute_async_v2
# TensorRT 8.4 replaced max_workspace_size by memory pools; before it the workspace defaulted to 0.
_LEGACY_WORKSPACE_BYTES = 1 << 30
_TFLITE_IDENTIFIER = b"TFL3"
_DLA_DEVICE = re.compile(r"nvhost-nvdla(\d+)$")   # /dev/nvhost-nvdla0, 1 on Xavier and Orin

Shape = Tuple[int, ...]


# --- plain-data logic (tested without TensorRT) ---------------------------------------------------

def parse_version(text: str) -> Shape:
    """"8.5.2.2" -> (8, 5, 2, 2); stops at the first part that is not a number ("10.0.0b6" -> (10, 0))."""
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def io_api(trt_version: str) -> str:
    version = parse_version(trt_version)
    if version < (8,):
        raise BackendUnavailableError(f"TensorRT {trt_version} is too old: this backend needs 8.0 or newer")
    return IO_TENSOR_ADDRESS if version >= (8, 5) else IO_BINDINGS


def needs_explicit_batch_flag(trt_version: str) -> bool:
    """TensorRT 8 defaults to implicit batch, which ONNX cannot use; 10.0 deprecated the flag (explicit only)."""
    return parse_version(trt_version) < (10,)


def has_memory_pools(trt_version: str) -> bool:
    return parse_version(trt_version) >= (8, 4)


@dataclass(frozen=True)
class BuildPlan:
    """How to build and run one engine, derived from BackendOptions and checked before anything loads."""

    precision: str                      # fp32 / fp16 / int8
    builder_flags: tuple[str, ...]      # names in trt.BuilderFlag
    dla_core: int                       # -1 = the GPU
    batch_size: int
    calibration_path: str               # "" = INT8 ranges from the model's Q/DQ nodes
    cuda_graph: bool
    input_shapes: tuple[tuple[str, Shape], ...] = ()  # the job's shapes: the profile's min = opt = max

    def shape_of(self, name: str) -> Shape | None:
        return dict(self.input_shapes).get(name)


def build_plan(options: BackendOptions) -> BuildPlan:
    precision = options.precision or "fp32"
    if precision not in PRECISIONS:
        raise BadInputError(f"unknown TensorRT precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if options.dla_core >= 0 and precision not in DLA_PRECISIONS:
        raise BadInputError(f"dla_core needs precision {' or '.join(DLA_PRECISIONS)} (DLA has no fp32), "
                            f"got {precision}")
    if options.calibration_path and precision != "int8":
        raise BadInputError(f"calibration_path is for precision int8, got {precision}")
    if options.batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {options.batch_size}")
    return BuildPlan(precision, _builder_flags(precision, options), options.dla_core, options.batch_size,
                     options.calibration_path, options.cuda_graph, options.input_shapes)


def _builder_flags(precision: str, options: BackendOptions) -> tuple[str, ...]:
    flags = {"fp16": ("FP16",), "int8": ("INT8",)}.get(precision, ())
    if options.sparsity:
        flags += ("SPARSE_WEIGHTS",)
    if options.dla_core >= 0:
        flags += ("GPU_FALLBACK",)  # layers the DLA cannot run go to the GPU instead of failing the build
    return flags


def provider_label(plan: BuildPlan) -> str:
    """What runs, as Result.provider: e.g. "GPU fp16", "DLA0 int8 (GPU fallback), sparse weights"."""
    where = f"DLA{plan.dla_core} {plan.precision} (GPU fallback)" if plan.dla_core >= 0 else f"GPU {plan.precision}"
    extras = [text for flag, text in (("SPARSE_WEIGHTS" in plan.builder_flags, "sparse weights"),
                                      (plan.cuda_graph, "CUDA graph")) if flag]
    return ", ".join([where] + extras)


def engine_key(artifact_sha: str, plan: BuildPlan, trt_version: str, gpu_name: str, compute_capability: str,
               l4t_release: str, calibration_sha: str) -> EngineKey:
    """Everything a serialized engine depends on. CUDA graphs change how it runs, not what is built."""
    flags = {"dla_core": plan.dla_core, "sparsity": "SPARSE_WEIGHTS" in plan.builder_flags,
             "batch_size": plan.batch_size, "calibration_sha256": calibration_sha,
             "input_shapes": shapes.shapes_text(plan.input_shapes)}
    return EngineKey(artifact_sha256=artifact_sha, backend=NAME, precision=plan.precision, flags=key_flags(flags),
                     runtime_version=trt_version, gpu_name=gpu_name, compute_capability=compute_capability,
                     l4t_release=l4t_release)


@dataclass(frozen=True)
class IoTensor:
    """One engine input or output as TensorRT declares it."""

    name: str
    is_input: bool
    shape: Shape                        # -1 = dynamic
    dtype: str                          # numpy dtype name


def run_shape(name: str, shape: Sequence[int], batch_size: int, wanted: Sequence[int] | None = None) -> Shape:
    """The one shape an input is built and run at: the job's, or a dynamic first dimension set to the batch size."""
    return shapes.run_shape(name, shape, batch_size, wanted)


def input_specs(tensors: Sequence[IoTensor], plan: BuildPlan) -> list[TensorSpec]:
    return [TensorSpec(t.name, list(run_shape(t.name, t.shape, plan.batch_size, plan.shape_of(t.name))), t.dtype)
            for t in tensors if t.is_input]


def bindings_list(tensors: Sequence[IoTensor], addresses: Mapping[str, int]) -> list[int]:
    """TensorRT 8.0-8.4 take device addresses as one list in binding-index order (the order of `tensors`)."""
    missing = [t.name for t in tensors if t.name not in addresses]
    if missing:
        raise ValueError(f"no device buffer for binding(s) {missing}")
    return [addresses[t.name] for t in tensors]


def check_feeds(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """An engine runs at the shapes it was set up for: names, shapes and dtypes must match exactly."""
    if sorted(feeds) != sorted(spec.name for spec in specs):
        raise BadInputError(f"inputs expected {[spec.name for spec in specs]}, given {sorted(feeds)}")
    for spec in specs:
        feed = feeds[spec.name]
        if list(feed.shape) != list(spec.shape) or feed.dtype != np.dtype(spec.dtype):
            raise BadInputError(f"input {spec.name!r} expects {list(spec.shape)}:{spec.dtype}, "
                                f"given {list(feed.shape)}:{feed.dtype}")


def calibration_batches(x: np.ndarray, input_shape: Sequence[int], dtype: str) -> list[np.ndarray]:
    """Whole batches of the input's shape from a calibration array; a partial last batch is dropped."""
    batch, sample_shape = int(input_shape[0]), tuple(input_shape[1:])
    if tuple(x.shape[1:]) != sample_shape:
        raise BadInputError(f"calibration x has samples of shape {list(x.shape[1:])}, "
                            f"the model's input takes {list(sample_shape)}")
    if len(x) < batch:
        raise BadInputError(f"calibration x has {len(x)} samples, fewer than one batch of {batch}")
    return [np.ascontiguousarray(x[i:i + batch], dtype=dtype) for i in range(0, len(x) - batch + 1, batch)]


def dla_cores(dev_root: str = "/dev") -> list[int]:
    found = {int(m.group(1)) for m in (_DLA_DEVICE.search(p) for p in glob.glob(f"{dev_root}/nvhost-nvdla*")) if m}
    return sorted(found)


# --- the runtime -----------------------------------------------------------------------------------

def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libnvinfer is not
        raise BackendUnavailableError(f"TensorRT is not installed on this agent: {exc}") from exc
    return tensorrt


def version() -> str | None:
    try:
        return _import_tensorrt().__version__
    except BackendUnavailableError:
        return None


def providers() -> list[str]:
    """Where engines can run: the GPU and each DLA core (device files only: no CUDA work in the agent)."""
    return [] if version() is None else ["gpu"] + [f"dla{core}" for core in dla_cores()]


def load(path: str, options: BackendOptions) -> TensorRTEngine:
    trt = _import_tensorrt()
    io_api(trt.__version__)  # refuses a TensorRT older than 8.0 before any work
    plan = build_plan(options)
    _reject_foreign_format(path)
    try:
        cuda = open_cuda_device(need_graphs=plan.cuda_graph)
    except CudaUnavailableError as exc:
        raise BackendUnavailableError(str(exc)) from exc
    try:
        return TensorRTEngine(trt, cuda, _engine(trt, cuda, path, plan, options.engine_cache_dir), plan)
    except BaseException:
        cuda.close()
        raise


def _reject_foreign_format(path: str) -> None:
    with open(path, "rb") as file:
        head = file.read(8)
    if head[4:8] == _TFLITE_IDENTIFIER:
        raise BadInputError("this is a TFLite model; run it with the 'litert' backend, not 'tensorrt'")


class _Loaded(NamedTuple):
    runtime: Any            # must outlive the engine it deserialized
    engine: Any
    build_ms: float
    cache_hit: bool


def _engine(trt: Any, cuda: CudaDevice, path: str, plan: BuildPlan, cache_dir: str) -> _Loaded:
    """The cached engine when there is one, else a fresh build (stored for the next job)."""
    logger = _logger(trt)
    runtime = trt.Runtime(logger)
    if plan.dla_core >= 0:
        runtime.DLA_core = plan.dla_core
    cache = EngineCache(Path(cache_dir)) if cache_dir else None
    key = _key_for(trt, cuda, path, plan) if cache is not None else None
    cached = cache.lookup(key) if cache is not None and key is not None else None
    if cached is not None:
        engine = runtime.deserialize_cuda_engine(cached.read_bytes())
        if engine is not None:
            return _Loaded(runtime, engine, 0.0, True)
        cache.evict(key)  # refused (corrupt, or from a build this TensorRT rejects): build again
    start = time.perf_counter_ns()
    serialized = _build(trt, logger, cuda, path, plan)
    build_ms = (time.perf_counter_ns() - start) / 1e6
    if cache is not None and key is not None:
        cache.write_bytes(key, serialized)
    return _Loaded(runtime, _deserialize(runtime, serialized, logger), build_ms, False)


def _key_for(trt: Any, cuda: CudaDevice, path: str, plan: BuildPlan) -> EngineKey:
    calibration_sha = artifact_sha256(plan.calibration_path) if plan.calibration_path else ""
    return engine_key(artifact_sha256(path), plan, trt.__version__, cuda.name, cuda.compute_capability,
                      collect_l4t_release(), calibration_sha)


def _deserialize(runtime: Any, serialized: bytes, logger: Any) -> Any:
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise RuntimeError(f"TensorRT cannot deserialize the engine it just built: {logger.summary()}")
    return engine


def _logger(trt: Any) -> Any:
    """Warnings and errors go to stderr (the worker keeps its tail for crash reports); errors are
    also kept, so a failed parse or build can say why in the job's own message."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR,
                            trt.ILogger.Severity.WARNING):
                sys.stderr.write(f"[TensorRT] {msg}\n")

        def summary(self) -> str:
            return "; ".join(self.errors[-3:]) or "no error logged"

    return CollectingLogger()


def _build(trt: Any, logger: Any, cuda: CudaDevice, path: str, plan: BuildPlan) -> bytes:
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    _parse(parser, path)
    config = builder.create_builder_config()
    _configure(trt, builder, config, plan)
    profile = _add_profile(builder, config, network, plan)
    calibrator = _attach_int8(trt, config, network, cuda, plan, profile)
    serialized = builder.build_serialized_network(network, config)
    del calibrator  # held until here: the config keeps only a raw pointer to it
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine: {logger.summary()}")
    return bytes(serialized)


def _network_flags(trt: Any) -> int:
    if needs_explicit_batch_flag(trt.__version__):
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def _parse(parser: Any, path: str) -> None:
    with open(path, "rb") as file:
        ok = parser.parse(file.read())
    if not ok:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadInputError(f"TensorRT's ONNX parser cannot read the model: {errors or 'no reason given'}")


def _configure(trt: Any, builder: Any, config: Any, plan: BuildPlan) -> None:
    if hasattr(trt, "ProfilingVerbosity"):  # TensorRT 8.2+: the inspector then gives tactics, formats, ONNX names
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if not has_memory_pools(trt.__version__):
        config.max_workspace_size = _LEGACY_WORKSPACE_BYTES
    if plan.dla_core >= 0:
        if plan.dla_core >= builder.num_DLA_cores:
            raise BackendUnavailableError(f"DLA core {plan.dla_core} asked, this board has "
                                          f"{builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core


def _add_profile(builder: Any, config: Any, network: Any, plan: BuildPlan) -> Any:
    """Pin every dynamic dimension at the job's shape (min = opt = max: the fastest kernels)."""
    profile, dynamic = builder.create_optimization_profile(), False
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        declared = tuple(tensor.shape)
        shape = run_shape(tensor.name, declared, plan.batch_size, plan.shape_of(tensor.name))
        if shape != declared:
            profile.set_shape(tensor.name, shape, shape, shape)
            dynamic = True
    if not dynamic:
        return None
    config.add_optimization_profile(profile)
    return profile


def _attach_int8(trt: Any, config: Any, network: Any, cuda: CudaDevice, plan: BuildPlan, profile: Any) -> Any:
    """INT8 ranges: the model's Q/DQ nodes (explicit), or a calibration set (implicit); never neither."""
    if plan.precision != "int8":
        return None
    if not plan.calibration_path:
        if not _has_qdq(trt, network):
            raise BadInputError("int8 needs a QDQ (quantize/dequantize) ONNX model or calibration_path "
                                "(.npz with an `x` array); this float model has neither")
        return None
    if network.num_inputs != 1:
        raise BadInputError(f"calibration feeds one input; this model has {network.num_inputs}")
    tensor = network.get_input(0)
    shape = run_shape(tensor.name, tuple(tensor.shape), plan.batch_size, plan.shape_of(tensor.name))
    with np.load(plan.calibration_path, allow_pickle=False) as data:
        batches = calibration_batches(data["x"], shape, np.dtype(trt.nptype(tensor.dtype)).name)
    calibrator = _entropy_calibrator(trt, cuda, batches)
    config.int8_calibrator = calibrator
    if profile is not None:
        config.set_calibration_profile(profile)  # a dynamic-shape network calibrates at this profile's shape
    return calibrator


def _has_qdq(trt: Any, network: Any) -> bool:
    kinds = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(index).type in kinds for index in range(network.num_layers))


def _entropy_calibrator(trt: Any, cuda: CudaDevice, batches: list[np.ndarray]) -> Any:
    """TensorRT pulls batches through get_batch until it returns None; one device buffer is reused."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._pending = list(batches)
            self._host = cuda.pinned_empty(batches[0].shape, batches[0].dtype.name)
            self._device = cuda.alloc(self._host.nbytes)

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            if not self._pending:
                return None
            np.copyto(self._host, self._pending.pop(0))
            cuda.to_device_async(self._device, self._host)
            cuda.synchronize()
            return [self._device]

        def read_calibration_cache(self) -> None:
            return None  # the engine itself is cached; a table alone would save little

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return EntropyCalibrator()


class _TensorAddressIo:
    """TensorRT 8.5+: I/O by tensor name, addresses set once on the context (10.0 has only this)."""

    def __init__(self, trt: Any, engine: Any, context: Any) -> None:
        self._trt, self._engine, self._context = trt, engine, context

    def tensors(self) -> list[IoTensor]:
        engine, trt = self._engine, self._trt
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        return [IoTensor(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                         tuple(engine.get_tensor_shape(name)), np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
                for name in names]

    def set_input_shape(self, name: str, shape: Sequence[int]) -> None:
        self._context.set_input_shape(name, tuple(shape))

    def output_shape(self, name: str) -> Shape:
        return tuple(self._context.get_tensor_shape(name))

    def bind(self, addresses: Mapping[str, int]) -> None:
        for name, address in addresses.items():
            self._context.set_tensor_address(name, address)

    def enqueue(self, stream_handle: int) -> bool:
        return self._context.execute_async_v3(stream_handle)


class _BindingIo:
    """TensorRT 8.0-8.4: I/O by binding index, all addresses passed as one list with each enqueue."""

    def __init__(self, trt: Any, engine: Any, context: Any) -> None:
        self._trt, self._engine, self._context = trt, engine, context
        self._bindings: list[int] = []

    def tensors(self) -> list[IoTensor]:
        engine, trt = self._engine, self._trt
        return [IoTensor(engine.get_binding_name(i), engine.binding_is_input(i), tuple(engine.get_binding_shape(i)),
                         np.dtype(trt.nptype(engine.get_binding_dtype(i))).name) for i in range(engine.num_bindings)]

    def set_input_shape(self, name: str, shape: Sequence[int]) -> None:
        self._context.set_binding_shape(self._engine.get_binding_index(name), tuple(shape))

    def output_shape(self, name: str) -> Shape:
        return tuple(self._context.get_binding_shape(self._engine.get_binding_index(name)))

    def bind(self, addresses: Mapping[str, int]) -> None:
        self._bindings = bindings_list(self.tensors(), addresses)

    def enqueue(self, stream_handle: int) -> bool:
        return self._context.execute_async_v2(bindings=self._bindings, stream_handle=stream_handle)


class TensorRTEngine:
    """A deserialized engine with pinned host and device buffers bound at the job's shapes."""

    compute_separable = True    # CUDA events give GPU compute time apart from the transfers

    def __init__(self, trt: Any, cuda: CudaDevice, loaded: _Loaded, plan: BuildPlan) -> None:
        self._cuda, self._runtime, self._engine = cuda, loaded.runtime, loaded.engine
        self._context = loaded.engine.create_execution_context()
        # read by the profiling pass (agent/profiling/tensorrt.py), after the headline measurement
        self.trt_engine, self.trt_context = loaded.engine, self._context
        io_class = _TensorAddressIo if io_api(trt.__version__) == IO_TENSOR_ADDRESS else _BindingIo
        self._io = io_class(trt, loaded.engine, self._context)
        tensors = self._io.tensors()
        self.inputs = input_specs(tensors, plan)
        self.provider, self.build_ms, self.cache_hit = provider_label(plan), loaded.build_ms, loaded.cache_hit
        self._allocate(tensors)
        self._start, self._end = cuda.new_event(), cuda.new_event()
        self._enqueue = self._enqueue_direct
        self._checked: dict[int, dict[str, np.ndarray]] = {}
        if plan.cuda_graph:
            self._capture_graph()

    def _allocate(self, tensors: list[IoTensor]) -> None:
        cuda, addresses = self._cuda, {}
        self._host_inputs: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            self._io.set_input_shape(spec.name, spec.shape)
            self._host_inputs[spec.name] = cuda.pinned_empty(spec.shape, spec.dtype)
        self._host_outputs: list[tuple[np.ndarray, int]] = []
        for tensor in (t for t in tensors if not t.is_input):
            shape = self._io.output_shape(tensor.name)
            if any(d < 0 for d in shape):
                raise BadInputError(f"output {tensor.name!r} has a data-dependent shape {list(shape)}; "
                                    "this backend needs output shapes known from the input shapes")
            host = cuda.pinned_empty(shape, tensor.dtype)
            addresses[tensor.name] = cuda.alloc(host.nbytes)
            self._host_outputs.append((host, addresses[tensor.name]))
        self._device_inputs = {name: cuda.alloc(host.nbytes) for name, host in self._host_inputs.items()}
        self._io.bind({**addresses, **self._device_inputs})

    def _enqueue_direct(self) -> None:
        if not self._io.enqueue(self._cuda.stream_handle):
            raise RuntimeError("TensorRT's enqueue failed (see the agent's stderr for TensorRT's log)")

    def _capture_graph(self) -> None:
        self._enqueue_direct()  # one plain enqueue first: TensorRT finishes deferred setup outside capture
        self._cuda.synchronize()
        self._cuda.capture_graph(self._enqueue_direct)
        self._enqueue = self._cuda.launch_graph

    def _execute(self, feeds: dict[str, np.ndarray]) -> None:
        """Host -> pinned -> device, enqueue between two events, device -> pinned, wait.
        Feeds are checked once per feeds dict (as LiteRT does), not inside every timed run."""
        if id(feeds) not in self._checked:
            check_feeds(self.inputs, feeds)
            self._checked[id(feeds)] = feeds  # kept alive, so the id stays this dict's
        cuda = self._cuda
        for name, host in self._host_inputs.items():
            np.copyto(host, feeds[name])
            cuda.to_device_async(self._device_inputs[name], host)
        cuda.record(self._start)
        self._enqueue()
        cuda.record(self._end)
        for host, device in self._host_outputs:
            cuda.to_host_async(host, device)
        cuda.synchronize()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._execute(feeds)
        return [host.copy() for host, _ in self._host_outputs]

    def run_timed(self, feeds: dict[str, np.ndarray]) -> Timing:
        start = time.perf_counter_ns()
        self._execute(feeds)
        host_ns = time.perf_counter_ns() - start
        return Timing(host_ns=host_ns, compute_ns=int(self._cuda.elapsed_ms(self._start, self._end) * 1e6))

    def close(self) -> None:
        # Context before engine before runtime, events and buffers too, all while the CUDA
        # context is still current; then the device memory goes with the CUDA device.
        self._context = self._io = self._enqueue = None
        self._engine = self._runtime = None
        self._start = self._end = None
        self._host_inputs, self._host_outputs, self._device_inputs = {}, [], {}
        self._cuda.close()
