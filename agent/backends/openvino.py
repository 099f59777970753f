"""OpenVINO backend: `Core().compile_model(...)` on ONNX models and OpenVINO IR, on CPU, GPU or NPU.

An IR is two files (model.xml, the graph; model.bin, the weights) and the farm ships one artifact per
variant, so an IR travels as an uncompressed tar of exactly those two members (IR_SUFFIX, `pack_ir`);
the engine reads both from memory, nothing is unpacked on the board.

Settings (devices.yaml backend_options.openvino; BackendOptions):
  device            "" or CPU, GPU, NPU (a plugin Describe lists); default CPU
  performance_hint  "" or latency, throughput; default latency (one request at a time, as we measure)
  threads           INFERENCE_NUM_THREADS; 0 = the plugin's own choice
  precision         "" = run the model at its own precision (INFERENCE_PRECISION_HINT f32), or fp16 / bf16
                    to let the plugin lower float layers. Left to itself the CPU plugin runs fp32 models in
                    bf16 on AMX/AVX512-BF16 Xeons and fp16 on ARM: a result would claim fp32 for what ran
                    at another precision, so we pin it unless the job says otherwise.
An int8 model (NNCF's FakeQuantize layers) runs int8 whatever the hint: the layers carry it.
"""
from __future__ import annotations

import tarfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec, Timing
from edgefarm.agent.shapes import check_wanted

NAME = "openvino"
IR_SUFFIX = ".ovir"                      # an IR's model.xml + model.bin as one uncompressed tar
IR_MEMBERS = ("model.xml", "model.bin")
HINTS = ("latency", "throughput")
PRECISIONS = {"": "f32", "fp32": "f32", "fp16": "f16", "bf16": "bf16"}
DEFAULT_DEVICE = "CPU"
_TFLITE_ID, _PTE_ID = b"TFL3", b"ET"


def _openvino() -> Any:
    import openvino  # 2023.1+: Core at the top level (openvino.runtime is deprecated)

    return openvino


@lru_cache(maxsize=None)
def _core() -> Any:
    return _openvino().Core()


def version() -> str | None:
    try:
        openvino = _openvino()
    except ImportError:
        return None
    return str(openvino.get_version()).split("-")[0]


def providers() -> list[str]:
    """The device plugins OpenVINO finds here: CPU always, GPU and NPU where their drivers are."""
    return list(_core().available_devices)


def load(path: str, options: BackendOptions) -> OpenVINOEngine:
    """Read an ONNX file or an IR bundle, fix the job's shapes, compile for the asked device."""
    device = _device(options)
    model = _reshaped(read_model(path), options)
    config = compile_config(options)
    start = time.perf_counter_ns()
    try:
        compiled = _core().compile_model(model, device, config)
    except RuntimeError as exc:
        raise BadInputError(f"OpenVINO cannot compile the model for {device}: {_last_line(exc)}") from exc
    build_ms = (time.perf_counter_ns() - start) / 1e6
    return OpenVINOEngine(compiled, device, config, build_ms)


def read_model(path: str) -> Any:
    """The model in `path`: an IR bundle (tar), or an ONNX file; anything else is refused in one line."""
    with open(path, "rb") as file:
        head = file.read(8)
    if head[4:8] == _TFLITE_ID:
        raise BadInputError("this is a TFLite model; run it with the 'litert' backend, not 'openvino'")
    if head[4:6] == _PTE_ID:
        raise BadInputError("this is an ExecuTorch program (.pte); run it with the 'executorch' backend")
    if tarfile.is_tarfile(path):
        xml, weights = _ir_from_bundle(path)
        return _read(lambda core: core.read_model(xml, _openvino().Tensor(weights)), path)
    return _read(lambda core: core.read_model(path), path)


def _read(reader: Any, path: str) -> Any:
    try:
        return reader(_core())
    except RuntimeError as exc:
        raise BadInputError(f"OpenVINO cannot read {path} as ONNX or IR: {_last_line(exc)}") from exc


def _ir_from_bundle(path: str) -> tuple[str, np.ndarray]:
    with tarfile.open(path) as bundle:
        names = bundle.getnames()
        if sorted(names) != sorted(IR_MEMBERS):
            raise BadInputError(f"{path} is a tar but not an OpenVINO IR bundle: it holds {names}, "
                                f"an IR bundle holds exactly {' and '.join(IR_MEMBERS)}")
        xml, weights = (bundle.extractfile(name).read() for name in IR_MEMBERS)  # type: ignore[union-attr]
    return xml.decode("utf-8"), np.frombuffer(weights, dtype=np.uint8)


def pack_ir(xml: Path, out: Path) -> Path:
    """model.xml and the .bin beside it as one IR bundle at `out`; BadInputError when the .bin is missing."""
    weights = Path(xml).with_suffix(".bin")
    if not weights.is_file():
        raise BadInputError(f"{xml} is an OpenVINO IR graph without its weights: {weights.name} is not beside it; "
                            f"copy the .bin that ov.save_model wrote next to the .xml")
    with tarfile.open(out, "w") as bundle:
        for source, name in ((Path(xml), IR_MEMBERS[0]), (weights, IR_MEMBERS[1])):
            bundle.add(str(source), arcname=name)
    return out


def compile_config(options: BackendOptions) -> dict[str, Any]:
    """compile_model's properties for the job's settings; unknown values are refused, never ignored."""
    hint = options.performance_hint or HINTS[0]
    if hint not in HINTS:
        raise BadInputError(f"unknown OpenVINO performance hint {hint!r}; valid: {', '.join(HINTS)}")
    if options.precision not in PRECISIONS:
        raise BadInputError(f"unknown OpenVINO precision {options.precision!r}; valid: fp32, fp16, bf16")
    if options.threads < 0:
        raise BadInputError(f"threads must be >= 0 (0 = the plugin's choice), got {options.threads}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper(),
                              "INFERENCE_PRECISION_HINT": PRECISIONS[options.precision]}
    if options.threads > 0:
        config["INFERENCE_NUM_THREADS"] = options.threads
    return config


def _device(options: BackendOptions) -> str:
    _refuse_foreign_settings(options)
    device = options.device or DEFAULT_DEVICE
    found = providers()
    if device not in found:
        raise BackendUnavailableError(f"OpenVINO has no {device} device here (it finds {', '.join(found)}); "
                                      f"install that plugin's driver or use device {DEFAULT_DEVICE}")
    return device


def _refuse_foreign_settings(options: BackendOptions) -> None:
    others = [name for name, is_set in (("execution_provider", options.execution_provider),
                                        ("delegate", options.delegate), ("dla_core", options.dla_core >= 0),
                                        ("sparsity", options.sparsity), ("cuda_graph", options.cuda_graph)) if is_set]
    if others:
        raise BadInputError(f"{', '.join(others)}: not settings of the 'openvino' backend "
                            "(it takes device, performance_hint, threads, precision)")


def _reshaped(model: Any, options: BackendOptions) -> Any:
    """Fix each input at the job's shape (or a dynamic batch at the batch size): static shapes compile best."""
    if options.batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {options.batch_size}")
    targets = {}
    for port in model.inputs:
        declared = tuple(_dims(port.get_partial_shape()))
        wanted = options.shape_of(port.get_any_name())
        if wanted is not None:
            targets[port.get_any_name()] = list(check_wanted(port.get_any_name(), declared, tuple(wanted)))
        elif declared and declared[0] < 0:
            targets[port.get_any_name()] = [options.batch_size, *declared[1:]]
    if targets:
        model.reshape(targets)
    return model


def _dims(shape: Any) -> list[int]:
    return [d.get_length() if d.is_static else -1 for d in shape]


def _spec(port: Any) -> TensorSpec:
    return TensorSpec(port.get_any_name(), _dims(port.get_partial_shape()),
                      np.dtype(port.get_element_type().to_dtype()).name)


class OpenVINOEngine:
    """A compiled model and one synchronous infer request."""

    compute_separable = False   # infer() is host-to-host; OpenVINO gives no compute-only time for it
    cache_hit = False

    def __init__(self, compiled: Any, device: str, config: dict[str, Any], build_ms: float) -> None:
        self.compiled = compiled          # the profiling pass reads its runtime model
        self.device, self.config, self.build_ms = device, dict(config), build_ms
        self._request = compiled.create_infer_request()
        self._infer = self._request.infer  # bound once: the timed loop stays as lean as a bare one
        self.inputs = [_spec(port) for port in compiled.inputs]
        self.provider = f"{device} ({self.config['INFERENCE_PRECISION_HINT']}, {self.config['PERFORMANCE_HINT']})"

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # to_tuple() is in the compiled model's output order; indexing the result by port costs ~2 us a call.
        return list(self._infer(feeds).to_tuple())

    def run_timed(self, feeds: dict[str, np.ndarray]) -> Timing:  # pragma: no cover - not separable
        raise NotImplementedError("OpenVINO's infer() gives no compute-only time")

    def close(self) -> None:
        self._infer = None
        self._request = None
        self.compiled = None


def _last_line(exc: BaseException) -> str:
    """OpenVINO's messages start with C++ source locations; the last non-empty line says what is wrong."""
    lines: Sequence[str] = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
