"""ONNX Runtime backend: CPU by default, CUDA / TensorRT / OpenVINO EPs when asked and present."""
from __future__ import annotations

import numpy as np

from agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec

NAME = "onnxruntime"
CPU_EP = "CPUExecutionProvider"
# ONNX type strings -> numpy dtype names.
_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(bool)": "bool",
}
_TFLITE_FILE_ID = b"TFL3"


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

    def __init__(self, session: object) -> None:
        self._session = session
        self._run = session.run  # bound once: keeps the timed loop as lean as a bare run()
        self.inputs = [TensorSpec(i.name, _dims(i.shape), _ORT_DTYPES.get(i.type, "float32"))
                       for i in session.get_inputs()]
        # The EP list after session creation says what really runs; ORT drops an EP it
        # cannot initialise and falls back to CPU without raising.
        self.provider = session.get_providers()[0]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._run(None, feeds)

    def run_timed(self, feeds: dict[str, np.ndarray]):  # pragma: no cover - not separable
        raise NotImplementedError("ONNX Runtime cannot separate compute-only time")

    def close(self) -> None:
        self._session = None
        self._run = None


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def load(path: str, options: BackendOptions) -> OrtEngine:
    import onnxruntime as ort

    _reject_foreign_format(path)
    wanted = options.execution_provider or CPU_EP
    if wanted not in ort.get_available_providers():
        raise BackendUnavailableError(
            f"execution provider {wanted} is not available in onnxruntime {ort.__version__} here; "
            f"available: {', '.join(ort.get_available_providers())}")
    so = ort.SessionOptions()
    if options.threads > 0:
        so.intra_op_num_threads = options.threads
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, sess_options=so, providers=_provider_chain(wanted))
    except Exception as exc:  # ORT raises several unrelated types for a bad model
        raise BadInputError(f"ONNX Runtime cannot load the model: {_first_line(exc)}") from exc
    return OrtEngine(session)


def _provider_chain(wanted: str) -> list[str]:
    return [wanted] if wanted == CPU_EP else [wanted, CPU_EP]


def _reject_foreign_format(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == _TFLITE_FILE_ID:
        raise BadInputError("this is a TFLite model; run it with the 'litert' backend, not 'onnxruntime'")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
