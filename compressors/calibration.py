"""Feeding calibration samples to ONNX Runtime's calibrators, one batch per call."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefarm.compressors.errors import CalibrationDataError
from edgefarm.compressors.npz_data import fixed_batch_size, load_inputs, model_inputs
from edgefarm.compressors.progress import ProgressFn, report

CALIBRATION_BATCH = 32  # large enough to keep calibration quick; min/max and histograms do not depend on it


class NpzCalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol: `get_next()` returns a feed dict, then None.

    ORT recognises the protocol by the method alone (a subclass hook), so this
    class does not need to import onnxruntime.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch: int, progress: ProgressFn | None = None) -> None:
        self._arrays = arrays
        self._batch = batch
        sample_count = len(next(iter(arrays.values())))
        self._count = sample_count - sample_count % batch  # every batch the same size; see even_batch_size
        self._start = 0
        self._progress = progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._start >= self._count:
            return None
        rows = slice(self._start, self._start + self._batch)
        self._start = rows.stop
        report(self._progress, "calibrate", self._start / self._count)
        return {name: array[rows] for name, array in self._arrays.items()}


def calibration_reader(
    model: Path, calib_npz: Path | None, recipe: str, progress: ProgressFn | None = None
) -> NpzCalibrationReader:
    """A reader over `calib_npz`; CalibrationDataError (naming `recipe`) if the data does not fit `model`."""
    context = f"recipe {recipe}"
    specs = model_inputs(model)
    arrays = load_inputs(calib_npz, specs, CalibrationDataError, context)
    count = len(next(iter(arrays.values())))
    fixed = fixed_batch_size(specs)
    if fixed is not None and count < fixed:
        raise CalibrationDataError(f"{context}: {calib_npz} holds {count} samples, fewer than the model's "
                                   f"fixed batch size {fixed}; add samples")
    return NpzCalibrationReader(arrays, fixed or even_batch_size(count, CALIBRATION_BATCH), progress)


def even_batch_size(sample_count: int, limit: int) -> int:
    """The largest batch size up to `limit` that divides `sample_count`, so no sample is left out.

    ORT's histogram calibrators (entropy, percentile) stack the outputs of all
    batches into one array, which fails unless every batch has the same size.
    """
    return next(size for size in range(min(limit, sample_count), 0, -1) if sample_count % size == 0)
