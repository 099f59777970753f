"""ONNX -> full-integer INT8 .tflite; runs inside the TensorFlow venv (see requirements.txt), never imported.

    python convert.py MODEL.onnx CALIB.npz OUT.tflite REPORT.json WORK_DIR

CALIB.npz holds one float32 array per ONNX input, in the ONNX input order, samples first.
Stages: onnx2tf writes a SavedModel (NCHW becomes NHWC) -> TFLiteConverter quantizes its
signature, with the batch fixed at 1 (the Edge TPU compiler takes static shapes only), int8
kernels only, int8 inputs and outputs, CALIB.npz as the representative dataset. REPORT.json
gets the tensors' types and quantization, the op counts, and on failure
{"error": {"step": ..., "message": ...}} (exit status 2).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import numpy as np  # noqa: E402

REPRESENTATIVE_SAMPLES = 200


class StepError(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def main(onnx_path: Path, calib_npz: Path, out: Path, report: Path, work_dir: Path) -> int:
    try:
        saved_model = to_saved_model(onnx_path, work_dir / "saved_model")
        out.write_bytes(to_full_integer(saved_model, calib_npz))
        report.write_text(json.dumps(describe(out), indent=2) + "\n")
        return 0
    except StepError as error:
        report.write_text(json.dumps({"error": {"step": error.step, "message": str(error)}}) + "\n")
        return 2


def to_saved_model(onnx_path: Path, saved_model: Path) -> Path:
    import onnx2tf

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            # No batch_size=1 here: with it, onnx2tf 1.29 misreads a residual block's [1,16,6,6] NCHW
            # tensor as NHWC (mobilenet-v2); the batch is fixed in to_full_integer instead.
            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(saved_model),
                            output_signaturedefs=True, non_verbose=True)
    except (Exception, SystemExit) as error:  # onnx2tf raises, or exits, on an op it cannot convert
        raise StepError("onnx2tf", _onnx2tf_failure(chatter.getvalue(), error)) from None
    return saved_model


def to_full_integer(saved_model: Path, calib_npz: Path) -> bytes:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    signature = loaded.signatures["serving_default"]
    specs = list(signature.structured_input_signature[1].items())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([batch_of_one(tf, signature, specs)], loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(specs, calib_npz)
    # Int8 kernels only: conversion fails on an op without one, rather than leaving it in float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as error:  # TensorFlow's converter errors carry the op names
        raise StepError("full-integer conversion (TFLiteConverter, int8 kernels only)",
                        _reason(str(error) or type(error).__name__)) from None


def batch_of_one(tf: Any, signature: Any, specs: list[tuple[str, Any]]) -> Any:
    """The signature as a concrete function whose inputs all have batch 1, in the signature's order."""
    fixed = [tf.TensorSpec([1, *spec.shape[1:]], spec.dtype, name=name) for name, spec in specs]

    @tf.function(input_signature=fixed)
    def call(*inputs: Any) -> Any:
        return signature(**{name: value for (name, _), value in zip(specs, inputs, strict=True)})

    return call.get_concrete_function()


def representative_dataset(specs: list[tuple[str, Any]], calib_npz: Path) -> Any:
    """Samples one at a time, in the signature's input order, NCHW moved to NHWC where onnx2tf did."""
    with np.load(calib_npz) as arrays:
        columns = [arrays[name] for name in arrays.files]
    if len(columns) != len(specs):
        raise StepError("representative dataset", f"the SavedModel takes {len(specs)} inputs, "
                                                  f"the calibration data has {len(columns)}")
    fitted = [_to_layout(column, spec.shape, name) for column, (name, spec) in zip(columns, specs, strict=True)]
    count = min(REPRESENTATIVE_SAMPLES, len(fitted[0]))

    def samples() -> Any:
        for row in range(count):
            yield [column[row:row + 1] for column in fitted]

    return samples


def _to_layout(column: np.ndarray, shape: Any, name: str) -> np.ndarray:
    wanted = [None if size is None else int(size) for size in shape.as_list()][1:]
    if _fits(column.shape[1:], wanted):
        return column
    if column.ndim == 4 and _fits(column.transpose(0, 2, 3, 1).shape[1:], wanted):
        return column.transpose(0, 2, 3, 1)
    raise StepError("representative dataset", f"calibration samples of shape {list(column.shape[1:])} "
                                              f"do not fit input {name} {wanted}")


def _fits(actual: tuple[int, ...], wanted: list[int | None]) -> bool:
    return len(actual) == len(wanted) and all(w is None or w == a for a, w in zip(actual, wanted, strict=True))


def describe(tflite: Path) -> dict[str, Any]:
    """What a caller checks: I/O types and quantization, op counts, how many tensors are still float."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    ops = [op["op_name"] for op in interpreter._get_ops_details()]  # private, but the only op listing
    tensors = interpreter.get_tensor_details()
    return {
        "inputs": [_tensor(detail) for detail in interpreter.get_input_details()],
        "outputs": [_tensor(detail) for detail in interpreter.get_output_details()],
        "ops": {name: ops.count(name) for name in sorted(set(ops))},
        "float_tensors": sum(detail["dtype"] == np.float32 for detail in tensors),
        "versions": {"tensorflow": tf.__version__, "onnx2tf": _version("onnx2tf")},
    }


def _tensor(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(size) for size in detail["shape"]], "scale": float(scale), "zero_point": int(zero_point)}


def _version(distribution: str) -> str:
    from importlib import metadata

    return metadata.version(distribution)


def _onnx2tf_failure(chatter: str, error: BaseException) -> str:
    """'op NAME: reason' from onnx2tf's log (which names the ONNX node) and the exception's last line."""
    lines = [_ANSI_COLOUR.sub("", line).strip() for line in chatter.splitlines()]
    op = next((line.split("onnx_op_name:", 1)[1].strip() for line in lines if "onnx_op_name:" in line), None)
    # On SystemExit the reason is only in the log: its last "...Error: ..." line.
    logged = [line for line in lines if re.match(r"^\w+(Error|Exception): ", line)]
    reason = str(error) if not isinstance(error, SystemExit) else (logged[-1] if logged else f"exit {error}")
    return f"{'op ' + op + ': ' if op else ''}{_reason(reason)}"


def _reason(text: str) -> str:
    """The line that says what went wrong: Keras wraps it between a header and a list of call arguments."""
    lines = [line.strip() for line in text.split("Call arguments received")[0].splitlines() if line.strip()]
    informative = [line for line in lines if not line.startswith("Exception encountered when calling")]
    return ((informative or lines or ["no reason given"])[0])[:600]


_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


if __name__ == "__main__":
    sys.exit(main(*(Path(arg) for arg in sys.argv[1:6])))
