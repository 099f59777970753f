"""ONNX Runtime backend: CPU by default, CUDA / TensorRT / OpenVINO EPs when asked and present.

Execution providers come from `BackendOptions.execution_provider` (devices.yaml):
  "" or CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider, OpenVINOExecutionProvider.
An EP that this onnxruntime build does not contain fails the job (BackendUnavailableError):
nothing of what was asked could run. An EP that is built in but cannot start (no GPU, driver or
cuDNN) is dropped by ONNX Runtime itself, which then runs on the CPU without raising; the engine
reports that as provider "CPUExecutionProvider (fallback from CUDAExecutionProvider)".

Engine cache (`BackendOptions.engine_cache_dir`): the first load of an artifact optimizes the graph
(ORT_ENABLE_ALL) and saves the optimized model; later loads read that file with optimizations off,
so they build nothing (cache_hit, build_ms 0). The TensorRT and OpenVINO EPs compile nodes that
cannot be saved as ONNX; they keep their own engine files in a per-key folder instead.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np

from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec
from edgefarm.agent.engine_cache import EngineCache, EngineKey, artifact_sha256, collect_l4t_release, key_flags
from edgefarm.agent.shapes import shapes_text

NAME = "onnxruntime"
CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
OPENVINO_EP = "OpenVINOExecutionProvider"
# EPs that compile nodes into their own engines: ORT cannot save those graphs, the EP caches them itself.
SELF_CACHING_EPS = (TENSORRT_EP, OPENVINO_EP)
TENSORRT_EP_PRECISIONS = ("", "fp32", "fp16", "int8")
# ONNX type strings -> numpy dtype names.
_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(bool)": "bool",
}
_TFLITE_FILE_ID = b"TFL3"
ProviderEntry = Union[str, Tuple[str, Dict[str, str]]]  # an EP name, or (name, its options)


def version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def providers() -> list[str]:
    import onnxruntime
    return list(onnxruntime.get_available_providers())


class OrtEngine:
    compute_separable = False  # ORT's host API gives no compute-only time

    def __init__(self, session: Any, wanted: str, model_path: str, build_ms: float, cache_hit: bool) -> None:
        self._session = session
        self._run = session.run  # bound once: keeps the timed loop as lean as a bare run()
        self.inputs = [TensorSpec(i.name, _dims(i.shape), _ORT_DTYPES.get(i.type, "float32"), _dim_names(i.shape))
                       for i in session.get_inputs()]
        # The EP list after session creation says what really runs; ORT drops an EP it
        # cannot initialise and falls back to CPU without raising.
        self.provider = provider_report(wanted, session.get_providers())
        self.fell_back = self.provider != wanted
        self.model_path = model_path  # what the session read: the cached optimized model on a hit
        self.build_ms = build_ms
        self.cache_hit = cache_hit

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._run(None, feeds)

    def run_timed(self, feeds: dict[str, np.ndarray]):  # pragma: no cover - not separable
        raise NotImplementedError("ONNX Runtime cannot separate compute-only time")

    def close(self) -> None:
        self._session = None
        self._run = None


def provider_report(wanted: str, session_providers: list[str]) -> str:
    """The EP that runs the graph, saying so when it is not the one asked for."""
    ran = session_providers[0] if session_providers else CPU_EP
    return ran if ran == wanted else f"{ran} (fallback from {wanted})"


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def _dim_names(shape: list) -> tuple[str, ...]:
    return tuple(d if isinstance(d, str) else "" for d in shape)


def load(path: str, options: BackendOptions) -> OrtEngine:
    import onnxruntime as ort

    _reject_foreign_format(path)
    wanted = options.execution_provider or CPU_EP
    _check_options(wanted, options)
    _require_provider(ort, wanted)
    if not options.engine_cache_dir:
        session, build_ms = _create_session(ort, path, _session_options(ort, options),
                                            _provider_chain(ort, wanted, options, ""))
        return OrtEngine(session, wanted, path, build_ms, cache_hit=False)
    cache, key = EngineCache(Path(options.engine_cache_dir)), engine_key(ort.__version__, path, wanted, options)
    if wanted in SELF_CACHING_EPS:
        return _load_with_ep_cache(ort, path, options, cache, key)
    return _load_with_saved_graph(ort, path, options, cache, key)


def engine_key(ort_version: str, path: str, wanted: str, options: BackendOptions) -> EngineKey:
    """What an optimized graph (or an EP's engine) depends on; threads and batch size do not change it."""
    from edgefarm.agent.describe import collect_cpu_model  # heavy module: only when a cache is in use

    precision = options.precision if wanted == TENSORRT_EP else ""
    flags = {"execution_provider": wanted, "optimization": "all", "dla_core": options.dla_core}
    if wanted == TENSORRT_EP:  # its engines are built for one shape profile
        flags["input_shapes"] = shapes_text(options.input_shapes)
    return EngineKey(artifact_sha256=artifact_sha256(path), backend=NAME, precision=precision,
                     flags=key_flags(flags), runtime_version=ort_version, l4t_release=collect_l4t_release(),
                     cpu_model=collect_cpu_model())


def _load_with_saved_graph(ort: Any, path: str, options: BackendOptions, cache: EngineCache,
                           key: EngineKey) -> OrtEngine:
    wanted = options.execution_provider or CPU_EP
    cached = cache.lookup(key)
    if cached is not None:
        engine = _load_optimized(ort, str(cached), options, wanted)
        if engine is not None:
            return engine
        cache.evict(key)  # unreadable to this build: optimize again from the artifact
    with cache.staged(key) as optimized:
        so = _session_options(ort, options)
        so.optimized_model_filepath = str(optimized)
        session, build_ms = _create_session(ort, path, so, _provider_chain(ort, wanted, options, ""))
        engine = OrtEngine(session, wanted, path, build_ms, cache_hit=False)
        if engine.fell_back and optimized.exists():
            optimized.unlink()  # optimized for the fallback EP, not the one the key names: keep nothing
    return engine


def _load_optimized(ort: Any, cached: str, options: BackendOptions, wanted: str) -> OrtEngine | None:
    """A session on the saved optimized model, optimizations off; None when ORT refuses the file."""
    so = _session_options(ort, options)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # done ahead of time
    try:
        session = ort.InferenceSession(cached, sess_options=so, providers=_provider_chain(ort, wanted, options, ""))
    except Exception:  # ORT raises several unrelated types for an unreadable model
        return None
    return OrtEngine(session, wanted, cached, build_ms=0.0, cache_hit=True)


def _load_with_ep_cache(ort: Any, path: str, options: BackendOptions, cache: EngineCache,
                        key: EngineKey) -> OrtEngine:
    """TensorRT/OpenVINO EPs write their own engine files into the key's folder; any file there is a hit.

    The TensorRT EP builds at session creation for static shapes; a dynamic shape outside its
    profile rebuilds at the first run, which then shows in the first-inference time.
    """
    wanted = options.execution_provider
    folder = cache.dir_for(key)
    hit = folder.is_dir() and any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    session, build_ms = _create_session(ort, path, _session_options(ort, options),
                                        _provider_chain(ort, wanted, options, str(folder)))
    return OrtEngine(session, wanted, path, 0.0 if hit else build_ms, cache_hit=hit)


def _create_session(ort: Any, model_path: str, so: Any, chain: list[ProviderEntry]) -> tuple[Any, float]:
    start = time.perf_counter_ns()
    try:
        session = ort.InferenceSession(model_path, sess_options=so, providers=chain)
    except Exception as exc:  # ORT raises several unrelated types for a bad model
        raise BadInputError(f"ONNX Runtime cannot load the model: {_first_line(exc)}") from exc
    return session, (time.perf_counter_ns() - start) / 1e6


def _session_options(ort: Any, options: BackendOptions) -> Any:
    so = ort.SessionOptions()
    if options.threads > 0:
        so.intra_op_num_threads = options.threads
    so.log_severity_level = 3
    return so


def _require_provider(ort: Any, wanted: str) -> None:
    if wanted not in ort.get_available_providers():
        raise BackendUnavailableError(
            f"execution provider {wanted} is not available in onnxruntime {ort.__version__} here; "
            f"available: {', '.join(ort.get_available_providers())}")


def _check_options(wanted: str, options: BackendOptions) -> None:
    """Settings ONNX Runtime would silently ignore are refused, so no result claims what did not run."""
    tensorrt_only = [name for name, is_set in (("sparsity", options.sparsity), ("cuda_graph", options.cuda_graph),
                                               ("calibration_path", bool(options.calibration_path))) if is_set]
    if tensorrt_only:
        raise BadInputError(f"{', '.join(tensorrt_only)}: settings of the 'tensorrt' backend, not 'onnxruntime'")
    if wanted == TENSORRT_EP:
        if options.precision not in TENSORRT_EP_PRECISIONS:
            raise BadInputError(f"unknown precision {options.precision!r} for {TENSORRT_EP}; "
                                f"valid: {', '.join(p for p in TENSORRT_EP_PRECISIONS if p)}")
        return
    if options.precision not in ("", "fp32"):
        raise BadInputError(f"{wanted} runs the model at its own precision; precision {options.precision} "
                            f"needs {TENSORRT_EP} (or a model converted to that precision)")
    if options.dla_core >= 0:
        raise BadInputError(f"dla_core needs {TENSORRT_EP} (or the 'tensorrt' backend), not {wanted}")


def _provider_chain(ort: Any, wanted: str, options: BackendOptions, ep_cache_dir: str) -> list[ProviderEntry]:
    if wanted == CPU_EP:
        return [CPU_EP]
    chain: list[ProviderEntry] = [(wanted, ep_options(wanted, options, ep_cache_dir))]
    if wanted == TENSORRT_EP and CUDA_EP in ort.get_available_providers():
        chain.append(CUDA_EP)  # nodes TensorRT cannot take then run on CUDA, not the CPU
    return chain + [CPU_EP]


def ep_options(wanted: str, options: BackendOptions, ep_cache_dir: str) -> dict[str, str]:
    """Provider options for the asked EP: precision, DLA core and where its engine files go."""
    if wanted == TENSORRT_EP:
        settings = {"trt_fp16_enable": options.precision == "fp16", "trt_int8_enable": options.precision == "int8"}
        if options.dla_core >= 0:
            settings.update(trt_dla_enable=True, trt_dla_core=options.dla_core)
        if ep_cache_dir:
            settings.update(trt_engine_cache_enable=True, trt_engine_cache_path=ep_cache_dir)
        if options.input_shapes:  # one profile at the job's shapes, as the tensorrt backend builds it
            shapes = shapes_text([(name, dims) for name, dims in options.input_shapes if dims], ",")
            settings.update(trt_profile_min_shapes=shapes, trt_profile_opt_shapes=shapes, trt_profile_max_shapes=shapes)
        return {name: str(value) for name, value in settings.items()}
    if wanted == OPENVINO_EP and ep_cache_dir:
        return {"cache_dir": ep_cache_dir}
    return {}


def _reject_foreign_format(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == _TFLITE_FILE_ID:
        raise BadInputError("this is a TFLite model; run it with the 'litert' backend, not 'onnxruntime'")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
