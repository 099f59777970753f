"""Running torch steps one after another, each result cached as a stage.

A stage is one step applied to one input: a directory under <cache>/stages/ holding the
model as ONNX (model.onnx), its weights (state_dict.pt) and a record (stage.json). Its name
hashes the step, its parameters and the input's identity — for the first step the model's
PyTorch source and data, for later ones the previous stage's hash — so two chains that
start with the same steps share those stages, and a re-run trains nothing twice. Each stage
is written in a staging directory and published in one rename (cache.staged_directory).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.cache import staged_directory
from edgefarm.compressors.models.bundle import ModelBundle, TorchSource
from edgefarm.compressors.progress import ProgressFn, report
from edgefarm.compressors.torch_steps import TORCH_STEPS, ParamValue, TorchStep

STAGE_FORMAT = 1  # bump when a step's output for the same inputs changes
STAGES = "stages"
ONNX, WEIGHTS, RECORD = "model.onnx", "state_dict.pt", "stage.json"


@dataclass(frozen=True)
class Stage:
    """A step's result: the model after it, and the record of what the step did."""

    bundle: ModelBundle
    record: Mapping[str, Any]  # step, params, duration_s, accuracy, stats_before, stats_after, ...


def run_torch_steps(
    bundle: ModelBundle,
    steps: Sequence[tuple[str, Mapping[str, ParamValue]]],
    cache_dir: Path,
    progress: ProgressFn | None = None,
) -> list[Stage]:
    """Apply `steps` (name, parameters with defaults filled in) in order; one Stage per step."""
    if not steps:
        return []
    digest = source_digest(bundle)
    stages = []
    for name, params in steps:
        step = TORCH_STEPS[name]
        digest = _stage_digest(digest, step, params)
        entry = Path(cache_dir) / STAGES / f"{step.name}-{digest[:24]}"
        if not _is_cached(entry):
            shutil.rmtree(entry, ignore_errors=True)  # an entry damaged after it was published
            with staged_directory(entry) as staging:
                _run_stage(bundle, step, params, staging, progress)
        bundle = _stage_bundle(bundle, step, entry)
        stages.append(Stage(bundle, json.loads((entry / RECORD).read_text())))
    return stages


def source_digest(bundle: ModelBundle) -> str:
    """What a model's torch steps start from: its PyTorch source, its data and its ONNX interface."""
    source = _torch_source(bundle)
    identity = {
        "builder": source.builder, "width": source.width, "input_shape": list(source.input_shape),
        "state_dict_sha256": sha256_file(source.state_dict), "train_sha256": sha256_file(source.train_npz),
        "onnx_sha256": sha256_file(bundle.onnx_path), "metric": bundle.metric,
        "eval_sha256": sha256_file(bundle.eval_npz) if bundle.eval_npz and bundle.eval_npz.is_file() else None,
    }
    return _digest(identity)


def _torch_source(bundle: ModelBundle) -> TorchSource:
    if bundle.torch_source is None:
        from edgefarm.compressors.errors import BadModelError

        raise BadModelError(f"{bundle.name} has no PyTorch source, so torch steps cannot run on it; "
                            f"a model given as an ONNX file takes only ONNX-level steps")
    return bundle.torch_source


def _stage_digest(parent: str, step: TorchStep, params: Mapping[str, ParamValue]) -> str:
    return _digest({"format": STAGE_FORMAT, "parent": parent, "step": step.name, "params": dict(params)})


def _digest(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _is_cached(entry: Path) -> bool:
    try:
        record = json.loads((entry / RECORD).read_text())
        return all((entry / name).stat().st_size == size for name, size in record["sizes"].items())
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def _stage_bundle(parent: ModelBundle, step: TorchStep, entry: Path) -> ModelBundle:
    record = json.loads((entry / RECORD).read_text())
    source = _torch_source(parent)
    # A model trained for int8 (QAT, BatchNorm folded) goes to its int8-static step only: no torch step follows.
    after = None if step.quantizes else replace(source, state_dict=entry / WEIGHTS, width=record["width"])
    return replace(parent, onnx_path=entry / ONNX, torch_source=after)


def _run_stage(
    bundle: ModelBundle, step: TorchStep, params: Mapping[str, ParamValue], out_dir: Path, progress: ProgressFn | None
) -> None:
    import torch

    from edgefarm.compressors.torch_steps.training import deterministic_torch

    with deterministic_torch(torch):
        record = _train_and_export(bundle, step, params, out_dir, progress)
    record["accuracy"] = _accuracy(bundle, out_dir / ONNX)
    record["sizes"] = {name: (out_dir / name).stat().st_size for name in (ONNX, WEIGHTS)}
    (out_dir / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _train_and_export(
    bundle: ModelBundle, step: TorchStep, params: Mapping[str, ParamValue], out_dir: Path, progress: ProgressFn | None
) -> dict[str, Any]:
    import torch

    from edgefarm.compressors.models.torch_builders import load_module
    from edgefarm.compressors.torch_steps.stats import model_stats
    from edgefarm.compressors.torch_steps.training import TorchModel, TrainData

    source = _torch_source(bundle)
    model = TorchModel(load_module(source), source.builder, source.width, source.input_shape)
    before = model_stats(model.module, source.input_shape)
    started = time.perf_counter()
    model = step.load()(model, params, TrainData.load(source.train_npz), progress)
    duration_s = time.perf_counter() - started
    _export(bundle, step, model.module, source.input_shape, out_dir / ONNX, progress)
    torch.save(model.module.state_dict(), out_dir / WEIGHTS)
    return {
        "step": step.name, "params": dict(params), "duration_s": round(duration_s, 6), "width": model.width,
        "stats_before": before, "stats_after": model_stats(model.module, source.input_shape),
        "versions": {"torch": torch.__version__},
    }


def _export(
    bundle: ModelBundle, step: TorchStep, module: Any, input_shape: tuple[int, ...], path: Path,
    progress: ProgressFn | None,
) -> None:
    from edgefarm.compressors.torch_steps.export import OnnxInterface, export_onnx

    report(progress, "export", 0.0)
    export_onnx(module, input_shape, path, OnnxInterface.of(bundle.onnx_path))
    report(progress, "export", 1.0)


def _accuracy(bundle: ModelBundle, onnx_path: Path) -> float | None:
    # Each stage's own accuracy: where a chain loses accuracy, and how much fine-tuning wins back.
    if bundle.eval_npz is None:
        return None
    from edgefarm.compressors.evaluate import METRICS

    return METRICS[bundle.metric](onnx_path, bundle.eval_npz)


def distilled_model(
    bundle: ModelBundle, cache_dir: Path, width: float = 0.35, progress: ProgressFn | None = None
) -> ModelBundle:
    """The distillation student of `bundle` as a model of its own: every recipe applies to it.

    It is the `distill` stage's result (cached like any stage), named after its teacher and width.
    """
    from edgefarm.compressors.errors import RecipeParamsError

    step = TORCH_STEPS["distill"]
    params = {param.name: param.default for param in step.params} | {"width": width}
    problem = next(param.check(width) for param in step.params if param.name == "width")
    if problem:
        raise RecipeParamsError(f"step distill: width={width} {problem}")
    (stage,) = run_torch_steps(bundle, [("distill", params)], cache_dir, progress)
    return replace(stage.bundle, name=f"{bundle.name}-student-w{width:g}")
