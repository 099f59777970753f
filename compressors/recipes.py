"""Recipes turn a float32 ONNX model into a variant: fp32, fp16, int8-dynamic, int8-static, and chains.

Each recipe is one entry in an explicit registry. `compress` runs a recipe once
per (model, recipe, parameters, data) and caches the result: the artifact plus
a JSON record of what it is, beside it, published in one atomic rename.

A chain (edgefarm.compressors.chains, docs/recipes.md) is a recipe too: PyTorch steps such as
pruning and fine-tuning, then at most one single-step recipe. The built-in chains are
registered by name; a one-line chain or a chain from a recipe file is accepted as is.

The shared types (Variant, Recipe, RecipeJob, RecipeOutcome) live in the leaf module
edgefarm.compressors.types and are re-exported here; a module that needs only them imports
them from there, so only modules that need the registry import this one.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors import (
    chains,
    executorch_export,
    int4,
    mixed_precision,
    openvino_export,
    quantize,
    tflite_export,
)
from edgefarm.compressors.cache import staged_directory
from edgefarm.compressors.calibration import calibration_reader
from edgefarm.compressors.chain_runner import run_chain
from edgefarm.compressors.errors import BadModelError, CalibrationDataError, RecipeParamsError, UnknownRecipeError
from edgefarm.compressors.models.bundle import ModelBundle
from edgefarm.compressors.progress import ProgressFn, report
from edgefarm.compressors.types import ARTIFACT, Recipe, RecipeJob, RecipeOutcome, Variant

__all__ = [
    "RECIPES", "CalibrationDataError", "Recipe", "RecipeJob", "RecipeOutcome", "RecipeParamsError",
    "UnknownRecipeError", "Variant", "chain_recipe", "compress", "get_recipe", "onnx_steps", "recipe_names",
    "recipes_from_file",
]

# Bump when a recipe's output for the same inputs changes, so old entries are not reused.
# 2: records carry stats and steps (chains of PyTorch and ONNX steps). 4: uint8 activations by default.
CACHE_FORMAT = 4
RECORD = "variant.json"


def _fp32(job: RecipeJob) -> None:
    report(job.progress, "copy", 0.0)
    shutil.copyfile(job.bundle.onnx_path, job.out)
    report(job.progress, "copy", 1.0)


def _fp16(job: RecipeJob) -> None:
    import onnx
    from onnxconverter_common import float16

    report(job.progress, "convert", 0.0)
    with warnings.catch_warnings():
        # The converter warns for every weight below fp16's range that it rounds to 1e-7; that rounding
        # is what fp16 means, and the variant's measured accuracy and fidelity show what it costs.
        warnings.filterwarnings("ignore", message="the float32 number .* will be truncated", category=UserWarning)
        # keep_io_types: the model still takes and returns float32, so callers feed it the same data.
        model = float16.convert_float_to_float16(onnx.load(str(job.bundle.onnx_path)), keep_io_types=True)
    onnx.save(model, str(job.out))
    report(job.progress, "convert", 1.0)


def _int8_dynamic(job: RecipeJob) -> None:
    prepared = _prepare(job)
    report(job.progress, "quantize", 0.0)
    quantize.export_dynamic(prepared, job.out)
    report(job.progress, "quantize", 1.0)


def _int8_static(job: RecipeJob) -> None:
    method = job.params["calibration"]
    # Read and check the data first: bad data should fail before any slow step.
    reader = calibration_reader(job.bundle.onnx_path, job.bundle.calib_npz, "int8-static", job.progress)
    prepared = _prepare(job)
    ranges = quantize.calibrate(prepared, reader, method, job.work_dir)
    report(job.progress, "quantize", 0.0)
    quantize.export_static(prepared, ranges, method, job.out, quantize.Int8Settings.from_params(job.params))
    report(job.progress, "quantize", 1.0)


def _prepare(job: RecipeJob) -> Path:
    report(job.progress, "prepare", 0.0)
    prepared = quantize.prepare(job.bundle.onnx_path, job.work_dir)
    report(job.progress, "prepare", 1.0)
    return prepared


RECIPES: dict[str, Recipe] = {
    "fp32": Recipe("fp32", _fp32),
    "fp16": Recipe("fp16", _fp16),
    "int8-dynamic": Recipe("int8-dynamic", _int8_dynamic),
    "int8-static": Recipe(
        "int8-static", _int8_static, {"calibration": tuple(quantize.CALIBRATION_METHODS), **quantize.INT8_CHOICES},
        uses_calibration=True,
    ),
    "mixed-int8": Recipe(
        "mixed-int8", mixed_precision.run,
        {"max_drop": mixed_precision.MAX_DROPS, "calibration": tuple(quantize.CALIBRATION_METHODS),
         **quantize.INT8_CHOICES},
        uses_calibration=True,
    ),
    "int4-weight": Recipe("int4-weight", int4.run, {"block_size": int4.BLOCK_SIZES, "embeddings": int4.EMBEDDINGS}),
    "tflite-int8": Recipe("tflite-int8", tflite_export.run, uses_calibration=True, artifact=tflite_export.ARTIFACT),
    # Other runtimes' own formats (docs/recipes.md): ExecuTorch programs from the PyTorch source, OpenVINO IR.
    "et-fp32": Recipe("et-fp32", executorch_export.run_fp32, uses_torch=True, artifact=executorch_export.ARTIFACT,
                      exports_from_program=True),
    "et-int8": Recipe("et-int8", executorch_export.run_int8, uses_calibration=True, uses_torch=True,
                      artifact=executorch_export.ARTIFACT, exports_from_program=True),
    "ov-fp16": Recipe("ov-fp16", openvino_export.run_fp16, artifact=openvino_export.ARTIFACT),
    "ov-int8": Recipe("ov-int8", openvino_export.run_int8, uses_calibration=True, artifact=openvino_export.ARTIFACT),
}


def onnx_steps() -> dict[str, Recipe]:
    """The single-step recipes: the ONNX-level steps a chain may end with."""
    return {name: recipe for name, recipe in RECIPES.items() if not recipe.spec}


def chain_recipe(chain: chains.Chain) -> Recipe:
    """A checked chain as a recipe: compress() caches it by its full steps like any other."""
    last = RECIPES[chain.onnx_step.name] if chain.onnx_step else None
    return Recipe(
        chain.name, partial(run_chain, chain, last), uses_calibration=bool(last and last.uses_calibration),
        spec=chain.text, uses_torch=bool(chain.torch_steps), artifact=last.artifact if last else ARTIFACT,
    )


# The built-in chains follow the single steps they are made of.
RECIPES.update(
    (name, chain_recipe(chains.parse_chain(text, onnx_steps(), name, source=f"built-in recipe {name}")))
    for name, text in chains.NAMED_CHAINS.items()
)


def recipe_names() -> list[str]:
    """The recipe names: single steps from least to most compressed, then the built-in chains."""
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """A registered recipe, or a one-line chain such as 'structured-prune(0.5) -> finetune -> int8-static'."""
    if name in RECIPES:
        return RECIPES[name]
    if chains.looks_like_chain(name):
        return chain_recipe(chains.parse_chain(name, onnx_steps()))
    raise UnknownRecipeError(f"unknown recipe {name!r}; valid recipes: {', '.join(recipe_names())}")


def recipes_from_file(path: Path) -> dict[str, Recipe]:
    """The recipes of a YAML recipe file (docs/recipes.md), checked; chains.ChainError names file and line."""
    loaded = chains.load_chain_file(path, onnx_steps(), taken=tuple(RECIPES))
    return {name: chain_recipe(chain) for name, chain in loaded.items()}


def compress(
    bundle: ModelBundle,
    recipe: str | Recipe,
    cache_dir: Path,
    params: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
) -> Variant:
    """The variant of `bundle` made by `recipe` (a name, a one-line chain or a Recipe, e.g. from
    recipes_from_file), from the cache under `cache_dir` or made now and cached."""
    chosen = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    resolved = chosen.resolve(params)
    if not bundle.onnx_path.is_file():
        raise BadModelError(f"model file {bundle.onnx_path} of {bundle.name} does not exist; check the path")
    _check_torch_source(bundle, chosen)
    inputs = _inputs_identity(bundle, chosen, resolved)
    entry = Path(cache_dir) / "variants" / _entry_name(chosen, inputs)
    if not _is_cached(entry):
        shutil.rmtree(entry, ignore_errors=True)  # an entry damaged after it was published
        with staged_directory(entry) as staging:
            job = RecipeJob(bundle, resolved, staging / "work", staging / chosen.artifact, progress, Path(cache_dir))
            _make_variant(job, chosen, inputs)
    return replace(_read_variant(entry), model=bundle.name)


def _check_torch_source(bundle: ModelBundle, recipe: Recipe) -> None:
    if not recipe.uses_torch or bundle.torch_source is not None:
        return
    if recipe.exports_from_program and bundle.exported_program is None:
        raise BadModelError(f"recipe {recipe.name} exports from PyTorch, but {bundle.name} has no PyTorch source "
                            "(a model given as an ONNX file); give the nn.Module itself "
                            "(edgefarm.compressors.models.torch_module.bundle_from_torch)")
    if not recipe.exports_from_program:
        raise BadModelError(f"recipe {recipe.name} has PyTorch steps, but {bundle.name} has no PyTorch source "
                            f"(a model given as an ONNX file); use ONNX-level recipes: {', '.join(onnx_steps())}")


def _inputs_identity(bundle: ModelBundle, recipe: Recipe, params: Mapping[str, str]) -> dict[str, Any]:
    # The data files belong to the identity: other calibration data makes another model,
    # other evaluation data another accuracy.
    identity = {
        "format": CACHE_FORMAT, "recipe": recipe.name, "params": dict(params),
        "model_sha256": sha256_file(bundle.onnx_path), "metric": bundle.metric,
        "calib_sha256": _sha256_if_file(bundle.calib_npz) if recipe.uses_calibration else None,
        "eval_sha256": _sha256_if_file(bundle.eval_npz),
    }
    if recipe.spec:
        identity["spec"] = recipe.spec
    if recipe.uses_torch:
        from edgefarm.compressors.torch_steps.stages import source_digest

        # weights and training data; or the user's saved program
        identity["torch_source"] = source_digest(bundle) if bundle.torch_source else \
            sha256_file(bundle.exported_program)
    return identity


def _entry_name(recipe: Recipe, inputs: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    # A one-line chain's name has spaces, parentheses and arrows: keep a file-name-safe prefix of it.
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", recipe.name).strip("-.")[:48]
    return f"{prefix}-{digest[:24]}"


def _sha256_if_file(path: Path | None) -> str | None:
    # A named file that is missing is reported by the step that reads it, with the recipe's name.
    return sha256_file(path) if path is not None and path.is_file() else None


def _is_cached(entry: Path) -> bool:
    try:
        record = json.loads((entry / RECORD).read_text())
        return (entry / record["file"]).stat().st_size == record["size_bytes"]
    except (OSError, ValueError, KeyError):
        return False


def _make_variant(job: RecipeJob, recipe: Recipe, inputs: Mapping[str, Any]) -> None:
    job.work_dir.mkdir()
    started = time.perf_counter()
    outcome = recipe.run(job) or RecipeOutcome()
    duration_s = time.perf_counter() - started
    shutil.rmtree(job.work_dir)
    accuracy = _measure_accuracy(job.bundle, job.out, job.progress)
    record = {
        "model": job.bundle.name, "recipe": recipe.name, "params": dict(job.params), "file": job.out.name,
        "size_bytes": job.out.stat().st_size, "sha256": sha256_file(job.out), "accuracy": accuracy,
        "duration_s": round(duration_s, 6), "inputs": dict(inputs), "created_unix": round(time.time(), 3),
        "versions": {name: _version(name) for name in _VERSIONED + (_TORCH_VERSIONED if recipe.uses_torch else ())
                     + _FORMAT_VERSIONED.get(Path(recipe.artifact).suffix, ())},
        "stats": dict(outcome.stats), "steps": list(outcome.steps),
    }
    (job.out.parent / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


_VERSIONED = ("onnx", "onnxruntime", "onnxconverter-common")
# What made another runtime's artifact, by its suffix: an exporter upgrade changes the artifact.
_FORMAT_VERSIONED = {".pte": ("executorch", "torchao"), ".ovir": ("openvino", "nncf")}
_TORCH_VERSIONED = ("torch", "torch-pruning")


def _measure_accuracy(bundle: ModelBundle, artifact: Path, progress: ProgressFn | None) -> float | None:
    if bundle.eval_npz is None:
        return None
    from edgefarm.compressors.evaluate import METRICS

    report(progress, "evaluate", 0.0)
    accuracy = METRICS[bundle.metric](artifact, bundle.eval_npz)
    report(progress, "evaluate", 1.0)
    return accuracy


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _read_variant(entry: Path) -> Variant:
    record = json.loads((entry / RECORD).read_text())
    return Variant(
        model=record["model"], recipe=record["recipe"], params=record["params"], path=entry / record["file"],
        size_bytes=record["size_bytes"], sha256=record["sha256"], accuracy=record["accuracy"],
        duration_s=record["duration_s"], stats=record.get("stats", {}), steps=tuple(record.get("steps", ())),
    )
