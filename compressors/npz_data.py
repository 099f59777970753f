"""Loading .npz data (calibration and evaluation) and checking it fits a model's inputs.

An .npz holds one array per model input, named after the input; a model with a
single input may call it `x` instead. Evaluation files add integer labels `y`.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefarm.compressors.errors import CalibrationDataError, EvalDataError

DataError = type[CalibrationDataError] | type[EvalDataError]
Dim = int | str | None  # a fixed size, a named dynamic one ("batch"), or unknown


@dataclass(frozen=True)
class ModelInput:
    """One graph input of an ONNX model, as the data must match it."""

    name: str
    shape: tuple[Dim, ...]
    dtype: np.dtype

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


def model_inputs(onnx_path: Path) -> list[ModelInput]:
    """The inputs a caller must feed (graph inputs that are not weights)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [_model_input(value) for value in graph.input if value.name not in weights]


def _model_input(value: Any) -> ModelInput:  # an onnx.ValueInfoProto
    import onnx

    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
    return ModelInput(value.name, shape, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)))


def fixed_batch_size(inputs: list[ModelInput]) -> int | None:
    """The batch size baked into the model's first input, or None when the batch dimension is dynamic."""
    first_dim = inputs[0].shape[0] if inputs[0].shape else None
    return first_dim if isinstance(first_dim, int) and first_dim > 0 else None


def load_inputs(npz_path: Path | None, inputs: list[ModelInput], error: DataError, context: str) -> dict:
    """{input name: array} from `npz_path`, or `error` saying which array is wrong and how to fix it."""
    arrays = _open_npz(npz_path, error, context)
    single = len(inputs) == 1
    fed = {spec.name: _input_array(arrays, spec, single, npz_path, error, context) for spec in inputs}
    counts = {len(array) for array in fed.values()}
    if len(counts) != 1 or 0 in counts:
        raise error(f"{context}: the arrays in {npz_path} must hold the same, non-zero number of samples; "
                    f"found {sorted(counts)}")
    return fed


def load_labels(npz_path: Path, sample_count: int, context: str) -> np.ndarray:
    """The integer labels `y` of an evaluation file, one per sample."""
    labels = _open_npz(npz_path, EvalDataError, context).get("y")
    if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != sample_count:
        found = "no array 'y'" if labels is None else f"'y' of {labels.dtype}{list(labels.shape)}"
        raise EvalDataError(f"{context}: {npz_path} has {found}; it needs integer labels y[{sample_count}]")
    return labels


def _open_npz(npz_path: Path | None, error: DataError, context: str) -> dict[str, np.ndarray]:
    kind = "calibration" if error is CalibrationDataError else "evaluation"
    if npz_path is None:
        raise error(f"{context}: the model has no {kind} data; pass an .npz with one array per model input")
    if not Path(npz_path).is_file():
        raise error(f"{context}: {kind} data {npz_path} does not exist; check the path")
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, TypeError) as cause:
        message = f"{context}: {npz_path} is not an .npz archive ({cause}); write it with np.savez"
        raise error(message) from None


def _input_array(
    arrays: dict[str, np.ndarray], spec: ModelInput, single: bool,
    npz_path: Path, error: DataError, context: str,
) -> np.ndarray:
    name = spec.name if spec.name in arrays or not single else "x"
    array = arrays.get(name)
    where = f"{context}: array {name!r} in {npz_path}"
    if array is None:
        raise error(f"{context}: {npz_path} has no array {spec.name!r}{' or x' if single else ''} "
                    f"(it has {sorted(arrays)}); save one with np.savez")
    if array.dtype != spec.dtype:
        raise error(f"{where} is {array.dtype}, but model input {spec.name!r} takes {spec.describe()}; "
                    f"convert it with .astype(np.{spec.dtype})")
    if not _shape_fits(array.shape, spec.shape):
        raise error(f"{where} has shape {list(array.shape)}, but model input {spec.name!r} "
                    f"takes {spec.describe()}; reshape it to match")
    return array


def _shape_fits(actual: tuple[int, ...], expected: tuple[Dim, ...]) -> bool:
    # The first dimension is the sample axis: data may hold more samples than one batch.
    if len(actual) != len(expected):
        return False
    pairs = zip(expected[1:], actual[1:], strict=True)
    return all(not isinstance(want, int) or want == got for want, got in pairs)
