"""mixed-int8: static INT8 with the layers that cost the most quality kept in float, within a budget.

Stages: calibrate once (the same activation ranges serve every trial) -> rank the weight
layers (Conv, Gemm, MatMul) by sensitivity -> keep the top k in float for k = 0, 1, 2, ...
until the quality drop against fp32, measured with the model's own metric on its evaluation
data, is at most `max_drop` percentage points -> write that model. ONNX Runtime's
nodes_to_exclude keeps a layer in float.

Sensitivity is "all but one": how much closer to the fp32 outputs the model gets, on the
calibration inputs, when only that layer stays float. It needs no labels, works for
classifiers and encoders alike, and does not pick layers on the evaluation data that the
budget is then checked on. details.json beside the artifact records the ranking, the layers
kept in float and the quality reached.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefarm.compressors import quantize
from edgefarm.compressors.calibration import calibration_reader
from edgefarm.compressors.errors import BadModelError, CalibrationDataError, EvalDataError, RecipeParamsError
from edgefarm.compressors.npz_data import fixed_batch_size, load_inputs, model_inputs
from edgefarm.compressors.progress import report

if TYPE_CHECKING:
    from edgefarm.compressors.types import RecipeJob

NAME = "mixed-int8"
MAX_DROPS = ("0.5", "0.25", "1", "2")  # percentage points of the metric; default first
WEIGHT_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
RANK_SAMPLES = 64  # of the calibration samples: enough to order the layers, a third of the time of 200
DETAILS = "details.json"


@dataclass(frozen=True)
class Trial:
    """One quantized model tried: which layers stayed float and the quality it reached."""

    kept_float: tuple[str, ...]
    quality: float
    drop_points: float


def run(job: RecipeJob) -> None:
    """Rank, then keep the most sensitive layers in float until the drop is within max_drop."""
    max_drop, method = float(job.params["max_drop"]), job.params["calibration"]
    # Read and check the data first: bad data should fail before any slow step.
    reader = calibration_reader(job.bundle.onnx_path, job.bundle.calib_npz, NAME, job.progress)
    eval_npz = _eval_data(job)
    prepared = quantize.prepare(job.bundle.onnx_path, job.work_dir)
    ranges = quantize.calibrate(prepared, reader, method, job.work_dir)
    quantizer = Quantizer(prepared, ranges, method, job.work_dir, quantize.Int8Settings.from_params(job.params))
    ranking = rank_layers(quantizer, _layers_to_rank(prepared, job), ranking_samples(prepared, job), job)
    trials = _keep_until_within(quantizer, ranking, eval_npz, max_drop, job)
    shutil.copyfile(quantizer.path(trials[-1].kept_float), job.out)
    _write_details(job.out.parent, ranking, trials, max_drop)


def _layers_to_rank(prepared: Path, job: RecipeJob) -> list[str]:
    layers = weight_layers(prepared)
    if not layers:
        raise BadModelError(f"recipe {NAME}: {job.bundle.name} has no {', '.join(WEIGHT_LAYERS)} layer with "
                            f"constant weights, so there is no layer to keep in float; use int8-static")
    return layers


def ranking_samples(prepared: Path, job: RecipeJob) -> dict[str, np.ndarray]:
    specs = model_inputs(prepared)
    calib_inputs = load_inputs(job.bundle.calib_npz, specs, CalibrationDataError, f"recipe {NAME}")
    limit = max(RANK_SAMPLES, fixed_batch_size(specs) or 0)  # calibration_reader checked there are that many
    return {name: array[:limit] for name, array in calib_inputs.items()}


def _eval_data(job: RecipeJob) -> Path:
    if job.bundle.eval_npz is None:
        raise EvalDataError(f"recipe {NAME}: {job.bundle.name} has no evaluation data, which the max_drop "
                            f"budget is checked on; pass an .npz with inputs and labels")
    return job.bundle.eval_npz


def weight_layers(onnx_path: Path) -> list[str]:
    """Names of the nodes with a constant weight input that static quantization turns into int8 kernels."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    constants = {init.name for init in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type in WEIGHT_LAYERS and len(node.input) > 1 and node.input[1] in constants]


class Quantizer:
    """Quantizes the prepared model with a given set of layers kept in float, once per set."""

    def __init__(self, prepared: Path, ranges: Path, method: str, work_dir: Path,
                 settings: quantize.Int8Settings) -> None:
        self._prepared, self._ranges, self._method, self._work_dir = prepared, ranges, method, work_dir
        self._settings = settings
        self._made: dict[tuple[str, ...], Path] = {}

    def path(self, kept_float: tuple[str, ...]) -> Path:
        if kept_float not in self._made:
            out = self._work_dir / f"trial-{len(self._made)}.onnx"
            quantize.export_static(self._prepared, self._ranges, self._method, out, self._settings, kept_float)
            self._made[kept_float] = out
        return self._made[kept_float]


def rank_layers(quantizer: Quantizer, layers: list[str], inputs: Mapping[str, np.ndarray],
                job: RecipeJob) -> list[tuple[str, float]]:
    """(layer, sensitivity) from most to least sensitive: the output error removed by keeping it float."""
    reference = _first_output(job.bundle.onnx_path, inputs)
    all_int8 = _relative_error(_first_output(quantizer.path(()), inputs), reference)
    scored = []
    for done, layer in enumerate(layers, start=1):
        error = _relative_error(_first_output(quantizer.path((layer,)), inputs), reference)
        scored.append((layer, all_int8 - error))
        report(job.progress, "rank layers", done / len(layers))
    return sorted(scored, key=lambda item: item[1], reverse=True)


def _keep_until_within(quantizer: Quantizer, ranking: list[tuple[str, float]], eval_npz: Path,
                       max_drop: float, job: RecipeJob) -> list[Trial]:
    from edgefarm.compressors.evaluate import METRICS

    score = METRICS[job.bundle.metric]
    fp32_quality = score(job.bundle.onnx_path, eval_npz)
    trials: list[Trial] = []
    for kept in range(len(ranking) + 1):
        kept_float = tuple(layer for layer, _ in ranking[:kept])
        quality = score(quantizer.path(kept_float), eval_npz)
        trials.append(Trial(kept_float, quality, round((fp32_quality - quality) * 100, 4)))
        report(job.progress, "keep in float", (kept + 1) / (len(ranking) + 1))
        if trials[-1].drop_points <= max_drop:
            return trials
    best = min(trial.drop_points for trial in trials)
    raise RecipeParamsError(f"recipe {NAME}: max_drop={max_drop:g} points cannot be met on {job.bundle.name}: "
                            f"even with all {len(ranking)} weight layers in float the {job.bundle.metric} drop is "
                            f"{trials[-1].drop_points:g} points (best {best:g}); choose a larger max_drop or fp16")


def _first_output(onnx_path: Path, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The first output for every sample, in batches the model takes (its fixed batch size, if it has one)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    count = len(next(iter(inputs.values())))
    batch = fixed_batch_size(model_inputs(onnx_path)) or count  # calibration_reader checked count >= batch
    outputs = [session.run(None, {name: array[start:start + batch] for name, array in inputs.items()})[0]
               for start in range(0, count - count % batch, batch)]
    return np.concatenate(outputs).astype(np.float64)


def _relative_error(output: np.ndarray, reference: np.ndarray) -> float:
    """Squared error relative to the reference's energy: 0 is identical, scale-free across models."""
    return float(((output - reference) ** 2).sum() / max(float((reference ** 2).sum()), 1e-30))


def _write_details(variant_dir: Path, ranking: list[tuple[str, float]], trials: list[Trial],
                   max_drop: float) -> None:
    final = trials[-1]
    details: dict[str, Any] = {
        "recipe": NAME, "max_drop_points": max_drop, "kept_float": list(final.kept_float),
        "quality": final.quality, "drop_points": final.drop_points, "weight_layers": len(ranking),
        "ranking": [{"layer": layer, "sensitivity": round(value, 8)} for layer, value in ranking],
        "trials": [{"kept_float": len(trial.kept_float), "quality": trial.quality, "drop_points": trial.drop_points}
                   for trial in trials],
    }
    (variant_dir / DETAILS).write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
