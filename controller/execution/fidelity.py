"""Fidelity without labels: every variant's outputs against the fp32 model's, on the host and on the board.

The fidelity set is a few feeds from the user's own data (--inputs, else the evaluation data, else
the calibration data) at exactly the shapes the run measures, with the fp32 model's outputs for
them. The controller scores each variant on it with ONNX Runtime on the CPU (host fidelity); the
same file ships to the board, which scores the engine it built (device fidelity). A board whose
fidelity falls clearly below the host's computes something else than the model says: a delegate
or an execution provider at fault (Edge TPU, TensorRT INT8), flagged in the report.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefarm.agent.backends.base import TensorSpec
from edgefarm.agent.digest import sha256_file
from edgefarm.agent.fidelity import OutputFidelity, compare_all, worst
from edgefarm.agent.inputs import load_feeds, synthetic_feeds
from edgefarm.compressors.cache import write_npz_once
from edgefarm.compressors.errors import EvalDataError
from edgefarm.compressors.npz_data import ModelInput, load_inputs
from edgefarm.controller.planning.input_plan import InputPlan

log = logging.getLogger(__name__)
MAX_FEEDS = 16            # enough to see a wrong kernel; few enough to cost well under a second per variant
SYNTHETIC_FEEDS = 4
SYNTHETIC = "synthetic inputs"
_FORMAT = 1
# Device fidelity "clearly below" host fidelity: a cosine this much lower, or top-1 agreement this much lower.
COSINE_MARGIN = 0.01
TOP1_MARGIN = 0.02


@dataclass(frozen=True)
class FidelitySet:
    """The .npz shipped to boards: stacked feeds ("input:NAME") and the fp32 outputs ("output:I")."""

    path: Path
    sha256: str
    source: str                  # which data the feeds came from, for the report
    feeds: tuple[Mapping[str, np.ndarray], ...]
    output_names: tuple[str, ...]
    references: tuple[tuple[np.ndarray, ...], ...]


def build_fidelity_set(reference_model: Path, inputs: Sequence[ModelInput], plan: InputPlan,
                       data: Sequence[tuple[str, Path | None]], cache_dir: Path) -> FidelitySet | None:
    """From the first data source that fits the run's shapes, else from synthetic inputs (and it says so:
    random data shows a broken kernel, but not how a variant does on the data it will meet). None when
    the fp32 model itself cannot run any of them: the board's own refusal then explains why."""
    for source, path in data:
        if path is None:
            continue
        try:
            feeds = _feeds(source, path, inputs, plan)
            return _cached_set(reference_model, source, sha256_file(path), feeds, plan, cache_dir)
        except Exception as exc:  # data that does not fit, or ORT's own error types (several, unrelated)
            log.info("fidelity: %s %s gives no feeds at the measured shapes: %s", source, path, exc)
    try:
        return _cached_set(reference_model, SYNTHETIC, SYNTHETIC, _synthetic_feeds(inputs, plan), plan, cache_dir)
    except Exception as exc:  # a model that needs real values (a sample rate) fails on synthetic ones
        log.info("fidelity: the fp32 model does not run on synthetic inputs: %s", exc)
        return None


def _synthetic_feeds(inputs: Sequence[ModelInput], plan: InputPlan) -> list[dict[str, np.ndarray]]:
    """The agent's own synthetic data, one seed per feed."""
    return [synthetic_feeds(_specs(inputs, plan), dict(plan.shapes), seed) for seed in range(SYNTHETIC_FEEDS)]


def _specs(inputs: Sequence[ModelInput], plan: InputPlan) -> list[TensorSpec]:
    return [TensorSpec(spec.name, list(plan.shape_of(spec.name)), spec.dtype.name) for spec in inputs]


def _feeds(source: str, path: Path, inputs: Sequence[ModelInput], plan: InputPlan) -> list[dict[str, np.ndarray]]:
    if source == "inputs":  # the agent's own reading of --inputs (one sample or a stack), so both sides agree
        return load_feeds(str(path), _specs(inputs, plan), dict(plan.shapes))[:MAX_FEEDS]
    arrays = load_inputs(path, list(inputs), EvalDataError, f"fidelity feeds from {path}")
    batch = plan.batch_size
    count = min(len(next(iter(arrays.values()))) // batch, MAX_FEEDS)
    feeds = [{name: a[k * batch:(k + 1) * batch] for name, a in arrays.items()} for k in range(count)]
    for name, array in (feeds[0].items() if feeds else ()):
        if tuple(array.shape) != plan.shape_of(name):
            raise ValueError(f"its {name!r} batches are {list(array.shape)}, the run measures "
                             f"{list(plan.shape_of(name))}")
    if not feeds:
        raise ValueError(f"it holds fewer samples than one batch of {batch}")
    return feeds


def _cached_set(reference_model: Path, source: str, data_id: str, feeds: list[dict[str, np.ndarray]],
                plan: InputPlan, cache_dir: Path) -> FidelitySet:
    """One file per (fp32 model, data, shapes): the same bytes every run, so a board never gets it twice."""
    key = hashlib.sha256(json.dumps({"format": _FORMAT, "model": sha256_file(reference_model),
                                     "data": data_id, "source": source, "shapes": plan.text(),
                                     "batch": plan.batch_size, "feeds": len(feeds)}).encode()).hexdigest()
    target = Path(cache_dir) / "fidelity" / f"{key[:32]}.npz"
    if not target.is_file():
        names, references = run_model(reference_model, feeds)
        _write_atomically(target, feeds, names, references)
    with np.load(target, allow_pickle=False) as archive:
        names = tuple(str(n) for n in archive["output_names"])
        references = tuple(tuple(archive[f"output:{i}"][k] for i in range(len(names))) for k in range(len(feeds)))
    return FidelitySet(target, sha256_file(target), source, tuple(feeds), names, references)


def _write_atomically(target: Path, feeds: list[dict[str, np.ndarray]], names: list[str],
                      references: list[list[np.ndarray]]) -> None:
    arrays = {f"input:{name}": np.stack([feed[name] for feed in feeds]) for name in feeds[0]}
    arrays.update({f"output:{i}": np.stack([ref[i] for ref in references]) for i in range(len(names))})
    arrays["output_names"] = np.array(names)
    write_npz_once(target, arrays)


def run_model(model: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> tuple[list[str], list[list[np.ndarray]]]:
    """Output names and each feed's outputs, with ONNX Runtime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return names, [session.run(None, dict(feed)) for feed in feeds]


def host_fidelity(variant: Path, fidelity: FidelitySet) -> list[OutputFidelity]:
    """A variant's outputs on the fidelity feeds against the fp32 outputs, on this host's CPU."""
    if variant.suffix != ".onnx":
        return []  # a .tflite variant has its own tensor names and layout: it is compared on the board only
    names, outputs = run_model(variant, fidelity.feeds)
    if len(names) != len(fidelity.output_names):
        return []
    return compare_all(list(fidelity.output_names), outputs, [list(r) for r in fidelity.references])


def summary(fidelities: Sequence[OutputFidelity], prefix: str = "") -> dict[str, float | str]:
    """The worst output's figures, as report columns (prefix "device_" for the board's)."""
    chosen = worst(fidelities)
    if chosen is None:
        return {}
    row: dict[str, float | str] = {f"{prefix}fidelity_cosine": chosen.cosine, f"{prefix}fidelity_snr_db": chosen.snr_db,
                                   f"{prefix}fidelity_max_abs_error": chosen.max_abs_error,
                                   f"{prefix}fidelity_output": chosen.name}
    if chosen.classifier:
        row[f"{prefix}top1_agreement"] = chosen.top1_agreement
    return row


def device_below_host(host: Mapping[str, object], device: Mapping[str, object]) -> bool:
    """The board computes clearly worse than the same variant on the host."""
    def drop(column: str) -> float:
        h, d = host.get(column), device.get(f"device_{column}")
        ok = isinstance(h, float) and isinstance(d, float) and not (math.isnan(h) or math.isnan(d))
        return h - d if ok else 0.0
    return drop("fidelity_cosine") > COSINE_MARGIN or drop("top1_agreement") > TOP1_MARGIN
