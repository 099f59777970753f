"""Accuracy of a model on the controller, with ONNX Runtime on the CPU.

This is the controller's own check that compression kept the model useful;
accuracy on a board is measured by the agent.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compressors.errors import EvalDataError
from compressors.npz_data import fixed_batch_size, load_inputs, load_labels, model_inputs

EVAL_BATCH = 256


def top1_accuracy(onnx_path: Path, eval_npz: Path) -> float:
    """Fraction (0..1) of samples whose highest-scoring class in the first output is the label `y`."""
    import onnxruntime

    context = f"top-1 accuracy of {onnx_path}"
    specs = model_inputs(onnx_path)
    inputs = load_inputs(eval_npz, specs, EvalDataError, context)
    labels = load_labels(eval_npz, len(next(iter(inputs.values()))), context)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    predicted = _predict_classes(session, inputs, fixed_batch_size(specs))
    if len(predicted) == 0:
        raise EvalDataError(f"{context}: {eval_npz} has fewer samples than the model's fixed batch size")
    # A model with a fixed batch size cannot take a short last batch; those samples are left out.
    return float((predicted == labels[: len(predicted)]).mean())


def _predict_classes(session: Any, inputs: dict[str, np.ndarray], fixed_batch: int | None) -> np.ndarray:
    count = len(next(iter(inputs.values())))
    batch = fixed_batch or EVAL_BATCH
    whole = count - count % fixed_batch if fixed_batch else count
    batches = [
        session.run(None, {name: array[start:start + batch] for name, array in inputs.items()})[0]
        for start in range(0, whole, batch)
    ]
    return np.concatenate(batches).argmax(axis=1) if batches else np.empty(0, dtype=np.int64)


# metric name (ModelBundle.metric) -> scoring function
METRICS: dict[str, Callable[[Path, Path], float]] = {
    "top1": top1_accuracy,
}
