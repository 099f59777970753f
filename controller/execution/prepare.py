"""Preparing a run's work on the workstation: the model, its variants, its input plan and fidelity set.
Shared by the single-board run and the farm run, which then hand the jobs to one executor."""
from __future__ import annotations

import os
from pathlib import Path

from edgefarm.agent.digest import sha256_file
from edgefarm.agent.pte_program import is_program
from edgefarm.compressors.models import ModelBundle, bundle_from_file, get_model
from edgefarm.compressors.recipes import Variant
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.fidelity import build_fidelity_set, host_fidelity
from edgefarm.controller.execution.fidelity import summary as fidelity_summary
from edgefarm.controller.planning.input_plan import InputPlan, declared_inputs, plan_inputs
from edgefarm.controller.planning.job_inputs import JobInputs
from edgefarm.controller.planning.run_plan import AS_IS, ModelSource, PlanError, RunPlan, model_name, prebuilt_format
from edgefarm.controller.results.store import VariantRecord


def resolve_model(plan: RunPlan, ui: RunConsole) -> ModelBundle:
    path = Path(plan.model)
    if path.suffix or path.exists():
        return bundle_from_file(path, plan.calib_npz, plan.eval_npz)
    return get_model(plan.model, plan.cache_dir, progress=ui.phase_bar(f"model {plan.model}"))

def prebuilt_variant(plan: RunPlan, source: ModelSource) -> Variant:
    """A .tflite, .pte or OpenVINO IR goes to the board as it is: the ONNX recipes do not apply to it."""
    path = source.path
    if set(plan.recipes) - {AS_IS, "fp32"}:
        raise PlanError(f"{Path(plan.model).name} is a prebuilt {Path(plan.model).suffix}: it runs as is, so recipes "
                        f"{', '.join(sorted(set(plan.recipes) - {AS_IS, 'fp32'}))} do not apply; drop --recipe")
    sha = sha256_file(path)
    return Variant(Path(plan.model).stem, AS_IS, {}, path, path.stat().st_size, sha, None, 0.0)

def model_source(plan: RunPlan, ui: RunConsole) -> ModelSource:
    if prebuilt_format(plan.model):
        return ModelSource(prebuilt_artifact(plan), None, plan.eval_npz, plan.calib_npz)
    bundle = resolve_model(plan, ui)
    return ModelSource(bundle.onnx_path, bundle, bundle.eval_npz, bundle.calib_npz)

def prebuilt_artifact(plan: RunPlan) -> Path:
    """The file a prebuilt model ships as, checked here so a wrong file fails before anything is uploaded."""
    path = Path(plan.model)
    if not path.is_file():
        raise PlanError(f"model file {path} does not exist; check the path")
    if path.suffix.lower() == ".pte":
        with open(path, "rb") as file:
            if not is_program(file.read(8)):
                raise PlanError(f"{path} is not an ExecuTorch program (no ET12 file identifier at bytes 4..8); "
                                "export one with torch.export and executorch's to_executorch(), or the et-fp32 recipe")
    if path.suffix.lower() != ".xml":
        return path
    return _ir_bundle(path, plan.cache_dir)

def _ir_bundle(xml: Path, cache_dir: Path) -> Path:
    """An IR's .xml and .bin as one .ovir in the cache, named after both files' contents."""
    from edgefarm.agent.backends.base import BadInputError
    from edgefarm.agent.backends.openvino import IR_SUFFIX, pack_ir

    weights = xml.with_suffix(".bin")
    digest = sha256_file(xml)[:12] + (sha256_file(weights)[:12] if weights.is_file() else "")
    target = cache_dir / "prebuilt" / f"{xml.stem}-{digest}{IR_SUFFIX}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        pack_ir(xml, staging)
    except BadInputError as exc:  # the .bin is not beside the .xml: one line, what and how to fix
        raise PlanError(str(exc)) from None
    staging.replace(target)
    return target

def job_inputs(plan: RunPlan, source: ModelSource) -> JobInputs:
    """The run's input plan and fidelity set; InputPlanError when a shape or the data does not fit."""
    if source.bundle is None and not source.path.is_file():
        raise PlanError(f"model file {source.path} does not exist; check the path")
    declared = declared_inputs(source.path)
    if declared is None:  # a .tflite, and no LiteRT runtime here: the agent checks the shapes itself
        given = InputPlan(plan.shapes, plan.measure.batch_size or 1, plan.inputs_npz, pinned=bool(plan.shapes))
        return JobInputs(given if plan.shapes or plan.inputs_npz else None, source.path.suffix)
    input_plan = plan_inputs(declared, plan.shapes, plan.measure.batch_size, plan.inputs_npz, model_name(plan.model))
    fidelity = None
    if source.bundle is not None:  # an fp32 ONNX model to take reference outputs from
        data = (("inputs", input_plan.inputs_npz), ("evaluation data", source.eval_npz),
                ("calibration data", source.calib_npz))
        fidelity = build_fidelity_set(source.path, declared, input_plan, data, plan.cache_dir)
    return JobInputs(input_plan, source.path.suffix, fidelity)

def host_fidelity_stats(variant: Variant, inputs: JobInputs) -> dict:
    if inputs.fidelity is None:
        return {}
    return {**fidelity_summary(host_fidelity(variant.path, inputs.fidelity)), "fidelity_source": inputs.fidelity.source}

def variant_record(variant: Variant, fidelity: dict) -> VariantRecord:
    """What the store keeps of a variant; host fidelity goes with its stats."""
    return VariantRecord(variant.model, variant.recipe, dict(variant.params), variant.sha256, variant.size_bytes,
                         variant.accuracy, variant.duration_s, {**variant.stats, **fidelity},
                         [dict(step) for step in variant.steps])
