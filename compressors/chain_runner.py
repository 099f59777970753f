"""Running a checked chain (edgefarm.compressors.chains reads and checks it): its PyTorch steps as
cached stages (edgefarm.compressors.torch_steps.stages), then its ONNX-level step, a single-step recipe.

recipes.chain_recipe binds a chain and its last step's Recipe to run_chain; the runner itself
needs no registry, so it imports the shared types from edgefarm.compressors.types, never recipes.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from edgefarm.compressors.calibration import calibration_reader
from edgefarm.compressors.chains import Chain, ChainStep
from edgefarm.compressors.types import Recipe, RecipeJob, RecipeOutcome

__all__ = ["run_chain"]


def run_chain(chain: Chain, onnx_step: Recipe | None, job: RecipeJob) -> RecipeOutcome:
    """Run `chain` on `job.bundle` into `job.out`: the torch steps as cached stages, then the ONNX step."""
    from edgefarm.compressors.torch_steps.stages import run_torch_steps

    if onnx_step is not None and onnx_step.uses_calibration:
        _check_calibration_data(chain, job)  # bad data should fail before any training
    torch_steps = [(step.name, step.params) for step in chain.torch_steps]
    stages = run_torch_steps(job.bundle, torch_steps, job.cache_dir or job.work_dir, job.progress)
    final = stages[-1].bundle if stages else job.bundle
    records = [_stage_record(stage.record) for stage in stages]
    if onnx_step is None:
        shutil.copyfile(final.onnx_path, job.out)
    else:
        records.append(_run_onnx_step(chain.onnx_step, onnx_step, replace(job, bundle=final)))
    return RecipeOutcome(_before_and_after(stages), tuple(records))


def _check_calibration_data(chain: Chain, job: RecipeJob) -> None:
    calibration_reader(job.bundle.onnx_path, job.bundle.calib_npz, chain.onnx_step.name)


def _stage_record(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("step", "params", "duration_s", "accuracy")
    return {key: record[key] for key in keys} | {"stats": record["stats_after"]}


def _run_onnx_step(step: ChainStep, recipe: Recipe, job: RecipeJob) -> dict[str, Any]:
    started = time.perf_counter()
    recipe.run(replace(job, params=dict(step.params)))
    return {"step": step.name, "params": dict(step.params), "duration_s": round(time.perf_counter() - started, 6)}


def _before_and_after(stages: list[Any]) -> dict[str, float]:
    """The model's statistics before the first torch step and after the last, e.g. params_before/params_after."""
    if not stages:
        return {}
    before, after = stages[0].record["stats_before"], stages[-1].record["stats_after"]
    return {f"{key}_before": before[key] for key in before} | {f"{key}_after": after[key] for key in after}
