"""Accuracy of a model on the controller, with ONNX Runtime on the CPU (LiteRT for a .tflite variant).

This is the controller's own check that compression kept the model useful;
accuracy on a board is measured by the agent. Classifiers are scored by top-1
accuracy, encoders by how close their embeddings stay to the fp32 model's.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgefarm.agent.fidelity import top1_hits
from edgefarm.compressors import runtime_eval
from edgefarm.compressors.errors import EvalDataError
from edgefarm.compressors.npz_data import fixed_batch_size, load_inputs, load_labels, model_inputs

EVAL_BATCH = 256


def top1_accuracy(onnx_path: Path, eval_npz: Path) -> float:
    """Fraction (0..1) of samples whose highest-scoring class in the first output is the label `y`."""
    import onnxruntime

    if Path(onnx_path).suffix == ".tflite":  # a LiteRT variant (tflite-int8) is scored with LiteRT
        from edgefarm.compressors.tflite_export import tflite_top1_accuracy

        return tflite_top1_accuracy(onnx_path, eval_npz)

    context = f"top-1 accuracy of {onnx_path}"
    if runtime_eval.handles(onnx_path):  # an ExecuTorch program or an OpenVINO IR: scored by its own runtime
        scores, count = runtime_eval.first_outputs(onnx_path, eval_npz, context)
        labels = load_labels(eval_npz, count, context)
        return top1_hits(scores, labels[: len(scores)]) / max(len(scores), 1)
    specs = model_inputs(onnx_path)
    inputs = load_inputs(eval_npz, specs, EvalDataError, context)
    labels = load_labels(eval_npz, len(next(iter(inputs.values()))), context)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    scores = _first_outputs(session, inputs, fixed_batch_size(specs))
    if len(scores) == 0:
        raise EvalDataError(f"{context}: {eval_npz} has fewer samples than the model's fixed batch size")
    # A model with a fixed batch size cannot take a short last batch; those samples are left out.
    return top1_hits(scores, labels[: len(scores)]) / len(scores)


def _first_outputs(session: Any, inputs: dict[str, np.ndarray], fixed_batch: int | None) -> np.ndarray:
    count = len(next(iter(inputs.values())))
    batch = fixed_batch or EVAL_BATCH
    whole = count - count % fixed_batch if fixed_batch else count
    batches = [
        session.run(None, {name: array[start:start + batch] for name, array in inputs.items()})[0]
        for start in range(0, whole, batch)
    ]
    return np.concatenate(batches) if batches else np.empty((0, 0), dtype=np.float32)


def embedding_cosine(onnx_path: Path, eval_npz: Path) -> float:
    """Mean cosine similarity (1 = same direction) of the first output's rows to the `reference` rows.

    For encoders: eval_npz keeps the fp32 model's embeddings as `reference`, so this says how
    faithfully a variant reproduces them; 1.0 for the fp32 model itself.
    """
    import onnxruntime

    context = f"embedding cosine of {onnx_path}"
    if runtime_eval.handles(onnx_path):
        embeddings, count = runtime_eval.first_outputs(onnx_path, eval_npz, context)
        reference = _reference_embeddings(eval_npz, count, context)
        return float(row_cosines(embeddings, reference[: len(embeddings)]).mean())
    specs = model_inputs(onnx_path)
    inputs = load_inputs(eval_npz, specs, EvalDataError, context)
    reference = _reference_embeddings(eval_npz, len(next(iter(inputs.values()))), context)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    embeddings = _first_outputs(session, inputs, fixed_batch_size(specs))
    if len(embeddings) == 0:
        raise EvalDataError(f"{context}: {eval_npz} has fewer samples than the model's fixed batch size")
    if embeddings.shape[1:] != reference.shape[1:]:
        raise EvalDataError(f"{context}: the model returns {list(embeddings.shape[1:])}-sized embeddings, "
                            f"'reference' in {eval_npz} holds {list(reference.shape[1:])}; it is another model's")
    return float(row_cosines(embeddings, reference[: len(embeddings)]).mean())


def _reference_embeddings(eval_npz: Path, sample_count: int, context: str) -> np.ndarray:
    with np.load(eval_npz, allow_pickle=False) as arrays:
        reference = arrays["reference"] if "reference" in arrays.files else None
    if reference is None or reference.ndim != 2 or reference.dtype.kind != "f" or len(reference) != sample_count:
        found = "no array" if reference is None else f"{reference.dtype}{list(reference.shape)} in"
        raise EvalDataError(f"{context}: {eval_npz} has {found} 'reference'; it needs the fp32 model's "
                            f"embeddings, float reference[{sample_count}, size]")
    return reference


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `a` with the same row of `b`, in float64."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-12)


# metric name (ModelBundle.metric) -> scoring function
METRICS: dict[str, Callable[[Path, Path], float]] = {
    "top1": top1_accuracy,
    "cosine": embedding_cosine,
}
