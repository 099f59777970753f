"""LiteRT (TensorFlow Lite) backend: .tflite flatbuffers on the CPU (XNNPACK), an Edge TPU or a GPU delegate.

Delegates are chosen by `BackendOptions.delegate`:
  "" or "xnnpack"   the runtime's default CPU path (XNNPACK where it takes the graph)
  "builtin"         the reference CPU kernels only, no default delegate
  "edgetpu"         Coral Edge TPU; "edgetpu:usb:0" or "edgetpu:pci:0" picks one of several
  "gpu"             the GPU delegate library, where the board has one

Quantized models (INT8/UINT8 inputs and outputs) take and return float32 host data like
their float twin: `run()` quantizes inputs and dequantizes outputs with each tensor's own
scale and zero point. That cost is inside the measured host time on purpose: an app that
feeds camera frames or features pays it too.
"""
from __future__ import annotations

import ctypes
import glob
import importlib
import os
import platform
import time
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec, Timing
from edgefarm.agent.shapes import check_wanted

NAME = "litert"

DELEGATE_NAMES = ("xnnpack", "builtin", "edgetpu", "gpu")

# Coral's runtime library per OS (coral.ai "Run inference on the Edge TPU with Python").
_EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
# USB accelerator ids: 1a6e:089a until the runtime loads its firmware, 18d1:9302 after.
_EDGETPU_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}
# An Edge TPU only runs what edgetpu_compiler put into this custom op; the rest stays on the CPU.
_EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
_GPU_LIBRARY = "libtensorflowlite_gpu_delegate.so"
# Every TFLite flatbuffer carries this file identifier at bytes 4..8 (schema.fbs: file_identifier "TFL3").
_TFLITE_IDENTIFIER = b"TFL3"


class _Runtime(NamedTuple):
    package: str
    version: str
    interpreter: Any                    # the Interpreter class
    load_delegate: Callable[..., Any]
    op_resolvers: Any                   # OpResolverType enum; None on runtimes too old to have one


def _from_module(package: str, module_name: str) -> _Runtime:
    module = importlib.import_module(module_name)
    root = importlib.import_module(module_name.split(".")[0])
    return _Runtime(package, _package_version(package, root), module.Interpreter, module.load_delegate,
                    getattr(module, "OpResolverType", None))


def _from_tensorflow(package: str, _module_name: str) -> _Runtime:
    import tensorflow as tf  # Jetson images ship full TensorFlow and no standalone runtime

    return _Runtime(package, _package_version(package, tf), tf.lite.Interpreter,
                    tf.lite.experimental.load_delegate, getattr(tf.lite.experimental, "OpResolverType", None))


# First found wins: ai-edge-litert (current), tflite-runtime (older Pi OS, Python 3.8), TensorFlow (Jetson).
_RUNTIMES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter", _from_module),
    ("tflite-runtime", "tflite_runtime.interpreter", _from_module),
    ("tensorflow", "tensorflow", _from_tensorflow),
)


def _package_version(package: str, root_module: Any) -> str:
    try:
        from importlib.metadata import version as distribution_version

        return distribution_version(package)
    except Exception:  # a vendor build without dist metadata (e.g. tensorflow-aarch64) still has __version__
        return str(getattr(root_module, "__version__", "unknown"))


@lru_cache(maxsize=None)
def _runtime() -> _Runtime | None:
    for package, module_name, importer in _RUNTIMES:
        try:
            return importer(package, module_name)
        except ImportError:
            continue
    return None


def _require_runtime() -> _Runtime:
    runtime = _runtime()
    if runtime is None:
        raise BackendUnavailableError(
            "no LiteRT runtime: install ai-edge-litert (Python >= 3.9) or tflite-runtime (Python 3.8)")
    return runtime


def version() -> str | None:
    """e.g. "ai-edge-litert 2.3.0"; None when no LiteRT runtime is installed."""
    runtime = _runtime()
    return None if runtime is None else f"{runtime.package} {runtime.version}"


def providers() -> list[str]:
    """What can run here: the CPU paths always, Edge TPU and GPU only when their libraries load."""
    if _runtime() is None:
        return []
    found = ["xnnpack", "builtin"]
    if _library_error(_edgetpu_library()) is None and edgetpu_devices():
        found.append("edgetpu")
    if _library_error(_GPU_LIBRARY) is None:
        found.append("gpu")
    return found


def edgetpu_devices() -> list[str]:
    """Edge TPUs attached to this board: PCIe/M.2 cards as /dev/apex_N, USB accelerators by id."""
    found = sorted(glob.glob("/dev/apex_*"))
    for device_dir in sorted(glob.glob("/sys/bus/usb/devices/*")):
        ids = tuple(_read_text(os.path.join(device_dir, name)) for name in ("idVendor", "idProduct"))
        if ids in _EDGETPU_USB_IDS:
            found.append(f"usb {ids[0]}:{ids[1]} at {os.path.basename(device_dir)}")
    return found


def _read_text(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return ""


def _edgetpu_library() -> str:
    return _EDGETPU_LIBRARIES.get(platform.system(), _EDGETPU_LIBRARIES["Linux"])


def _library_error(library: str) -> str | None:
    """None when `library` loads and has the external-delegate entry point, else why not.

    Checked before the runtime's load_delegate(): when dlopen fails there, it leaves a
    half-built Delegate whose __del__ raises AttributeError (ai-edge-litert 2.3).
    """
    try:
        handle = ctypes.CDLL(library)
    except OSError as error:
        return str(error)
    if not hasattr(handle, "tflite_plugin_create_delegate"):
        return (f"{library} has no tflite_plugin_create_delegate, "
                "the entry point through which the Python API loads a delegate")
    return None


def load(path: str, options: BackendOptions) -> LiteRTEngine:
    """Load a .tflite model with the delegate, threads and batch size in `options`."""
    runtime = _require_runtime()
    _check_tflite_file(path)
    delegate_name, device = _parse_delegate(options.delegate)
    delegates = _load_delegates(runtime, delegate_name, device)
    if delegate_name == "edgetpu":
        _check_edgetpu_compiled(path)
    interpreter = _make_interpreter(runtime, path, options.threads, delegate_name, delegates)
    _resize_inputs(interpreter, options)
    return LiteRTEngine(interpreter, _provider(interpreter, delegate_name), delegates,
                        [name for name, _ in options.input_shapes])


def _check_tflite_file(path: str) -> None:
    with open(path, "rb") as file:
        header = file.read(8)
    if header[4:8] != _TFLITE_IDENTIFIER:
        raise BadInputError(
            f"{path} is not a TFLite flatbuffer (no {_TFLITE_IDENTIFIER.decode()} identifier at bytes 4..8; "
            f"found {header[4:8]!r}); an ONNX model runs on the 'onnxruntime' backend")


def _parse_delegate(delegate: str) -> tuple[str, str]:
    """Split a delegate spec: 'edgetpu:usb:0' -> ('edgetpu', 'usb:0'); '' -> ('xnnpack', '')."""
    name, _, device = (delegate or "xnnpack").partition(":")
    if name not in DELEGATE_NAMES:
        raise BadInputError(f"unknown LiteRT delegate {name!r}; valid delegates: {', '.join(DELEGATE_NAMES)}")
    if device and name != "edgetpu":
        raise BadInputError(f"only the edgetpu delegate takes a device, got {delegate!r}")
    return name, device


def _load_delegates(runtime: _Runtime, name: str, device: str) -> list[Any]:
    if name == "edgetpu":
        return [_load_delegate(runtime, _edgetpu_library(), {"device": device} if device else {},
                               _edgetpu_advice)]
    if name == "gpu":
        return [_load_delegate(runtime, _GPU_LIBRARY, {}, _gpu_advice)]
    return []


def _load_delegate(runtime: _Runtime, library: str, options: dict[str, str],
                   advice: Callable[[bool], str]) -> Any:
    """The runtime's delegate, or BackendUnavailableError with the runtime's text and what to do."""
    library_error = _library_error(library)
    if library_error is not None:
        raise BackendUnavailableError(f"cannot load the delegate: {library_error}. {advice(False)}")
    try:
        return runtime.load_delegate(library, options)
    except (ValueError, RuntimeError, OSError) as error:
        # The runtime's text is "Failed to load delegate from <lib>", often with an empty reason.
        runtime_text = " ".join(str(error).split()) or type(error).__name__
        raise BackendUnavailableError(f"{runtime_text}. {advice(True)}") from error


def _edgetpu_advice(library_loaded: bool) -> str:
    """The same runtime error covers a missing library, no device and no permission: tell them apart."""
    library = _edgetpu_library()
    if not library_loaded:
        return (f"The Edge TPU runtime is not installed: install Coral's libedgetpu1-std "
                f"(or libedgetpu1-max) so that {library} loads, or run without delegate=edgetpu.")
    devices = edgetpu_devices()
    if not devices:
        return ("No Edge TPU found on this board (no USB device 1a6e:089a or 18d1:9302, no /dev/apex_*): "
                "plug in the USB Accelerator (a USB 3 port) or check the M.2/PCIe card's gasket/apex driver.")
    return (f"An Edge TPU is attached ({', '.join(devices)}) but could not be opened: check that this user "
            "may open it (plugdev group and Coral's udev rules for USB, apex group for /dev/apex_*) "
            "and that no other process holds it.")


def _gpu_advice(library_loaded: bool) -> str:
    if not library_loaded:
        return (f"The LiteRT GPU delegate is not in the Python wheels: build {_GPU_LIBRARY} with the "
                "tflite_plugin_create_delegate entry point, put it on LD_LIBRARY_PATH, or run on the CPU.")
    return "The GPU delegate loaded but could not start: check the board's OpenCL/OpenGL ES drivers."


def _check_edgetpu_compiled(path: str) -> None:
    with open(path, "rb") as file:
        compiled = _EDGETPU_CUSTOM_OP in file.read()
    if not compiled:
        raise BadInputError(
            f"{path} is not compiled for the Edge TPU, so nothing in it would run there: compile it with "
            "edgetpu_compiler (a full-integer INT8/UINT8 model) and load the *_edgetpu.tflite it writes")


def _make_interpreter(runtime: _Runtime, path: str, threads: int, delegate_name: str,
                      delegates: list[Any]) -> Any:
    if threads < 0:
        raise BadInputError(f"threads must be >= 0 (0 = the runtime's default), got {threads}")
    settings: dict[str, Any] = {"model_path": path, "experimental_delegates": delegates or None}
    if threads > 0:
        settings["num_threads"] = threads
    if delegate_name == "builtin" and runtime.op_resolvers is not None:
        settings["experimental_op_resolver_type"] = runtime.op_resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = runtime.interpreter(**settings)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise BadInputError(f"LiteRT cannot load {path}: {error}{_unresolved_op_hint(str(error))}") from error
    return interpreter


def _unresolved_op_hint(runtime_text: str) -> str:
    if _EDGETPU_CUSTOM_OP.decode() in runtime_text:
        return " (this model is compiled for the Edge TPU: load it with delegate=edgetpu)"
    return ""


def _resize_inputs(interpreter: Any, options: BackendOptions) -> None:
    """Resize dynamic signature inputs to the job's shapes (or a dynamic batch to the batch size);
    fixed dimensions stay as built, and a job shape that contradicts one is refused."""
    if options.batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {options.batch_size}")
    resized = False
    for detail in interpreter.get_input_details():
        signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
        wanted = options.shape_of(detail["name"])
        if wanted is not None:
            target = list(check_wanted(detail["name"], tuple(signature), tuple(wanted)))
        elif signature and signature[0] == -1:
            target = [options.batch_size, *[int(d) for d in detail["shape"][1:]]]
        else:
            continue
        if [int(d) for d in detail["shape"]] != target:
            interpreter.resize_tensor_input(detail["index"], target)
            resized = True
    if resized:
        interpreter.allocate_tensors()


def _provider(interpreter: Any, delegate_name: str) -> str:
    """What really runs on the CPU path: XNNPACK only when it took nodes of the graph."""
    if delegate_name in ("edgetpu", "gpu"):
        return delegate_name
    # Private, but the only way to see delegation; runtimes without it are older than our minimum.
    ops_details = getattr(interpreter, "_get_ops_details", None)
    if ops_details is None:
        return "builtin"
    delegated = any(op.get("op_name") == "DELEGATE" for op in ops_details())
    return "xnnpack" if delegated else "builtin"


def _is_quantized(detail: dict[str, Any]) -> bool:
    scale, _zero_point = detail["quantization"]
    return scale != 0 and np.issubdtype(detail["dtype"], np.integer)


def _host_spec(detail: dict[str, Any], resized_to_job: bool = False) -> TensorSpec:
    """What the caller feeds: float32 for a quantized input, dynamic dims (other than batch) as -1."""
    signature = list(detail.get("shape_signature", detail["shape"]))
    shape = [int(size) if index == 0 or signature[index] != -1 else -1
             for index, size in enumerate(detail["shape"])]
    if resized_to_job:  # the job's own shape: what the engine now runs at
        shape = [int(size) for size in detail["shape"]]
    dtype = "float32" if _is_quantized(detail) else np.dtype(detail["dtype"]).name
    return TensorSpec(name=detail["name"], shape=shape, dtype=dtype)


def _quantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] is np.float32 or not _is_quantized(detail):
        return values
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] is np.float32 or not _is_quantized(detail):
        return values
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)


def _check_feed(spec: TensorSpec, feed: np.ndarray) -> None:
    expected = list(spec.shape)
    given = list(feed.shape)
    if len(given) != len(expected) or any(want not in (-1, got) for want, got in zip(expected, given)):
        raise BadInputError(f"input {spec.name!r} expects shape {expected}, given {given}")
    if feed.dtype != np.dtype(spec.dtype):
        raise BadInputError(f"input {spec.name!r} expects dtype {spec.dtype}, given {feed.dtype}")


class LiteRTEngine:
    """A LiteRT interpreter ready to run host numpy arrays."""

    # LiteRT's Python API has no compute-only timer: host time is the only honest figure.
    compute_separable = False

    def __init__(self, interpreter: Any, provider: str, delegates: list[Any], job_shaped: Sequence[str] = ()) -> None:
        """job_shaped: the inputs the job gave a shape for (now fixed at it)."""
        self._interpreter = interpreter
        self._delegates = delegates     # must outlive the interpreter, which only borrows them
        self._input_details = interpreter.get_input_details()
        self._output_details = interpreter.get_output_details()
        self.inputs = [_host_spec(detail, detail["name"] in job_shaped)
                       for detail in self._input_details]
        self.provider = provider
        # Feeds dicts already checked, by id (each kept alive here so its id stays its own): the timed
        # loop cycles through a job's samples and must not re-check them on every call.
        self._checked: dict[int, dict[str, np.ndarray]] = {}

    @property
    def interpreter(self) -> Any:
        """The loaded interpreter, delegates applied: the profiling pass reads its placement."""
        return self._interpreter

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Quantize, invoke, dequantize: all inside the host time, as an application pays it.
        Feeds are checked (and dynamic shapes fitted) once per feeds dict, not on every call,
        so the timed loop carries no validation an application would not do."""
        if id(feeds) not in self._checked:
            if self._fit_shapes(self._checked_feeds(feeds)):
                self._checked.clear()  # fitted to other shapes than the feeds checked before
            self._checked[id(feeds)] = feeds
        interpreter = self._interpreter
        for detail, spec in zip(self._input_details, self.inputs):
            interpreter.set_tensor(detail["index"], _quantize(feeds[spec.name], detail))
        interpreter.invoke()
        return [_dequantize(interpreter.get_tensor(detail["index"]), detail) for detail in self._output_details]

    def run_timed(self, feeds: dict[str, np.ndarray]) -> Timing:
        start = time.perf_counter_ns()
        self.run(feeds)
        return Timing(host_ns=time.perf_counter_ns() - start)

    def close(self) -> None:
        # Interpreter first: freeing a delegate under a live interpreter crashes the runtime.
        self._interpreter = None
        self._delegates = []

    def _checked_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        expected = [spec.name for spec in self.inputs]
        if sorted(feeds) != sorted(expected):
            raise BadInputError(f"inputs expected {expected}, given {sorted(feeds)}")
        arrays = [np.asarray(feeds[spec.name]) for spec in self.inputs]
        for spec, array in zip(self.inputs, arrays):
            _check_feed(spec, array)
        return arrays

    def _fit_shapes(self, arrays: list[np.ndarray]) -> bool:
        """A dynamic dim fed a new size: resize every such input, then re-plan the tensors once."""
        resized = False
        for detail, array in zip(self._input_details, arrays):
            if list(detail["shape"]) != list(array.shape):
                self._interpreter.resize_tensor_input(detail["index"], list(array.shape))
                resized = True
        if resized:
            self._interpreter.allocate_tensors()
            self._input_details = self._interpreter.get_input_details()
            self._output_details = self._interpreter.get_output_details()
        return resized
