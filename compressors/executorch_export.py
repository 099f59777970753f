"""et-fp32 and et-int8: the model's PyTorch source as an ExecuTorch program (.pte) with the XNNPACK delegate.

Stages: rebuild the nn.Module from the bundle's TorchSource (the bundled models, a chain's PyTorch
stage, or a user's module saved by bundle_from_torch) -> torch.export at the model's example shape ->
[et-int8: PT2E quantization with the XNNPACK quantizer (symmetric int8, per-channel weights),
calibrated on the model's calib.npz] -> to_edge_transform_and_lower with the XnnpackPartitioner ->
to_executorch -> model.pte. Ops the partitioner cannot take stay on ExecuTorch's CPU kernels; that is
recorded (details.json: partitions and CPU-kernel ops), never an error.

The program has the example's static shape (batch 1 for the bundled models): ExecuTorch's memory plan
is fixed at export. Why from PyTorch rather than the ONNX file: ExecuTorch has no ONNX importer; its
only front end is torch.export.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefarm.agent.pte_program import placement_summary, read_methods
from edgefarm.compressors.errors import BadModelError, CalibrationDataError
from edgefarm.compressors.npz_data import load_inputs, model_inputs
from edgefarm.compressors.progress import report

if TYPE_CHECKING:
    from edgefarm.compressors.types import RecipeJob

ARTIFACT = "model.pte"
DETAILS = "details.json"
CALIBRATION_SAMPLES = 128   # min/max observers settle well before this; each sample is one eager pass (batch 1)


def run_fp32(job: RecipeJob) -> None:
    """The float model as a .pte, XNNPACK partitions delegated."""
    report(job.progress, "export", 0.0)
    with _quiet():
        program, _example = _exported(job, "et-fp32")
    _lower(program, job, "et-fp32")


def run_int8(job: RecipeJob) -> None:
    """PT2E int8 (XNNPACK quantizer) calibrated on calib.npz, then lowered like et-fp32."""
    samples = _calibration_samples(job)  # bad data fails before any slow step
    report(job.progress, "export", 0.0)
    with _quiet():
        program, example = _exported(job, "et-int8")
        converted = _quantized(program.module(), samples, job)
        program = _export(converted, example, "et-int8")
    _lower(program, job, "et-int8")


def _exported(job: RecipeJob, recipe: str) -> tuple[Any, tuple[Any, ...]]:
    """The float model as a torch.export program, and its example input: rebuilt from the TorchSource
    (the built-in models, a chain's stage), or the program bundle_from_torch saved for a user's module."""
    import torch

    from edgefarm.compressors.models.torch_builders import load_module

    source, saved = job.bundle.torch_source, job.bundle.exported_program
    if source is not None:
        example = (torch.zeros(source.input_shape),)
        return _export(load_module(source), example, recipe), example
    if saved is None:  # compress() refuses this first (uses_torch); kept for direct callers
        raise BadModelError(f"{job.bundle.name} has no PyTorch source; the et-* recipes export from PyTorch")
    program = torch.export.load(str(saved))
    return program, tuple(program.example_inputs[0])


def _export(module: Any, example: tuple[Any, ...], recipe: str) -> Any:
    import torch

    try:
        # A converted PT2E graph refuses eval(); load_module already returns the float model in eval mode.
        return torch.export.export(module, example)
    except Exception as exc:  # torch.export raises many types; the user needs the step and the reason
        raise BadModelError(f"recipe {recipe}: torch.export failed: {_first_line(exc)}; the module must be "
                            "exportable with torch.export (no data-dependent Python control flow)") from exc


def _calibration_samples(job: RecipeJob) -> list[np.ndarray]:
    """calib.npz as one-sample batches in the example's shape (the program's batch is fixed at 1)."""
    specs = model_inputs(job.bundle.onnx_path)
    if len(specs) != 1:
        raise BadModelError(f"recipe et-int8 calibrates single-input models; {job.bundle.name} has {len(specs)}")
    arrays = load_inputs(job.bundle.calib_npz, specs, CalibrationDataError, "recipe et-int8")
    x = next(iter(arrays.values())).astype(np.float32)
    return [x[row:row + 1] for row in range(min(len(x), CALIBRATION_SAMPLES))]


def _quantized(graph: Any, samples: list[np.ndarray], job: RecipeJob) -> Any:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for index, sample in enumerate(samples, start=1):
            prepared(torch.from_numpy(sample))
            report(job.progress, "calibrate", index / len(samples))
    return convert_pt2e(prepared)


def _lower(program: Any, job: RecipeJob, recipe: str) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    report(job.progress, "lower", 0.0)
    try:
        with _quiet():
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    except Exception as exc:  # the edge dialect or the partitioner refused an op: name it
        raise BadModelError(f"recipe {recipe}: lowering to ExecuTorch failed: {_first_line(exc)}") from exc
    job.out.write_bytes(lowered.buffer)
    report(job.progress, "lower", 1.0)
    _write_details(job.out, recipe)


def _write_details(pte: Path, recipe: str) -> None:
    """details.json: what XNNPACK took and which ops stayed on the CPU kernels."""
    (method,) = [m for m in read_methods(pte.read_bytes()) if m.name == "forward"]
    details = {"recipe": recipe, "placement": placement_summary(method),
               "delegated_partitions": len(method.delegated),
               "cpu_kernel_ops": sorted({step.name for step in method.kernels})}
    (pte.parent / DETAILS).write_text(json.dumps(details, indent=2) + "\n")


@contextmanager
def _quiet() -> Iterator[None]:
    # torch.export, torchao and executorch warn about their own API changes (deprecations, pytree
    # registrations) on every export; they are not about the user's model and would fail strict runs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
