"""ov-fp16 and ov-int8: the bundle's ONNX model as an OpenVINO IR, shipped as one .ovir bundle.

ov-fp16: ov.convert_model -> save_model(compress_to_fp16=True): weights stored in fp16 (half the size),
  decompressed to the plugin's inference precision when the model is compiled.
ov-int8: ov.convert_model -> nncf.quantize (post-training, the model's calib.npz as the calibration
  dataset, MIXED preset: symmetric weights, asymmetric activations) -> save_model. The IR carries
  FakeQuantize layers; the CPU plugin runs those layers in int8 (PERF_COUNT's exec_type says I8).

Both write model.xml + model.bin in the work directory and pack them (agent/backends/openvino.pack_ir).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefarm.agent.backends.openvino import IR_SUFFIX, pack_ir
from edgefarm.compressors.errors import BadModelError, CalibrationDataError
from edgefarm.compressors.npz_data import load_inputs, model_inputs
from edgefarm.compressors.progress import report

if TYPE_CHECKING:
    from edgefarm.compressors.types import RecipeJob

ARTIFACT = f"model{IR_SUFFIX}"
CALIBRATION_SAMPLES = 300   # NNCF's own default subset size


def run_fp16(job: RecipeJob) -> None:
    model = _converted(job, "ov-fp16")
    _save(model, job, compress_to_fp16=True)


def run_int8(job: RecipeJob) -> None:
    samples = _calibration_samples(job)  # bad data fails before any slow step
    model = _converted(job, "ov-int8")
    report(job.progress, "quantize", 0.0)
    _save(_quantized(model, samples), job, compress_to_fp16=False)
    report(job.progress, "quantize", 1.0)


def _converted(job: RecipeJob, recipe: str) -> Any:
    import openvino as ov

    report(job.progress, "convert", 0.0)
    try:
        model = ov.convert_model(str(job.bundle.onnx_path))
    except Exception as exc:  # OpenVINO raises its own OpConversionFailure and RuntimeError
        reason = [line for line in str(exc).splitlines() if line.strip()][-1:] or [type(exc).__name__]
        raise BadModelError(f"recipe {recipe}: OpenVINO cannot convert {job.bundle.name}: {reason[0]}") from exc
    report(job.progress, "convert", 1.0)
    return model


def _calibration_samples(job: RecipeJob) -> list[dict[str, np.ndarray]]:
    """calib.npz as one-sample feeds, by input name."""
    arrays = load_inputs(job.bundle.calib_npz, model_inputs(job.bundle.onnx_path), CalibrationDataError,
                         "recipe ov-int8")
    count = min(len(next(iter(arrays.values()))), CALIBRATION_SAMPLES)
    return [{name: array[row:row + 1] for name, array in arrays.items()} for row in range(count)]


def _quantized(model: Any, samples: list[dict[str, np.ndarray]]) -> Any:
    import nncf

    # NNCF logs INFO lines and draws its own progress bars on stdout; compressors never print (the run's
    # progress bar says enough), so both are kept off the terminal.
    nncf.set_log_level(logging.WARNING)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")   # NNCF warns about its optional backends (torch, onnx) it did not load
        return nncf.quantize(model, nncf.Dataset(samples), preset=nncf.QuantizationPreset.MIXED,
                             subset_size=len(samples))


def _save(model: Any, job: RecipeJob, compress_to_fp16: bool) -> None:
    import openvino as ov

    xml = job.work_dir / "model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    pack_ir(xml, job.out)
