"""tflite-int8: a full-integer INT8 .tflite (int8 inputs and outputs) for LiteRT and the Coral Edge TPU.

TensorFlow pins numpy and protobuf versions that clash with the controller's, so conversion
runs in its own virtual environment, as a subprocess (tflite_venv/convert.py). The environment
is made at first use from tflite_venv/requirements.txt (a few minutes, once per machine), under
the user cache directory or wherever EDGEFARM_TFLITE_VENV points.

Stages: check calib.npz against the model -> onnx2tf: ONNX to a TensorFlow SavedModel (NHWC,
batch 1) -> TFLiteConverter: int8 kernels only, int8 in and out, calib.npz as the
representative dataset -> edgetpu_compiler, when it is on PATH: model_edgetpu.tflite beside the
artifact, and how many ops map to the Edge TPU. details.json records all of it.

Why onnx2tf rather than rebuilding from the TorchSource with litert-torch: onnx2tf starts from
the ONNX file, so it converts every model the recipes take, a user's ONNX file included;
and it installs from small wheels beside TensorFlow, while litert-torch 0.10 needs its own torch
(PyPI's Linux wheel is the multi-GB CUDA build), jax, torchao and transformers.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefarm.agent.digest import sha256_file
from edgefarm.agent.fidelity import top1_hits
from edgefarm.compressors.cache import staged_directory
from edgefarm.compressors.errors import BadModelError, CalibrationDataError, CompressorError, EvalDataError
from edgefarm.compressors.npz_data import load_inputs, load_labels, model_inputs
from edgefarm.compressors.progress import ProgressFn, report

if TYPE_CHECKING:
    from edgefarm.compressors.types import RecipeJob

NAME = "tflite-int8"
ARTIFACT = "model.tflite"
DETAILS = "details.json"
VENV_FILES = Path(__file__).resolve().parent / "tflite_venv"
VENV_ENV_VAR = "EDGEFARM_TFLITE_VENV"
CONVERT_TIMEOUT_S = 900
INSTALL_TIMEOUT_S = 1800
NO_EDGETPU = "edgetpu_compiler not found: not compiled for the Edge TPU"


class ConverterEnvironmentError(CompressorError):
    """The TensorFlow environment tflite-int8 converts in could not be made or run."""


def run(job: RecipeJob) -> None:
    """Convert the bundle's ONNX model to a full-integer .tflite at job.out; details.json beside it."""
    calib = _calibration_inputs(job)
    python = converter_python(job.progress)
    report(job.progress, "convert", 0.0)
    converted = _convert(python, job, calib)
    report(job.progress, "convert", 1.0)
    converted["edgetpu"] = compile_for_edgetpu(job.out, job.work_dir)
    (job.out.parent / DETAILS).write_text(json.dumps({"recipe": NAME, **converted}, indent=2) + "\n")


def _calibration_inputs(job: RecipeJob) -> Path:
    """calib.npz checked against the ONNX model and rewritten in input order for the converter."""
    context = f"recipe {NAME}"
    specs = model_inputs(job.bundle.onnx_path)
    arrays = load_inputs(job.bundle.calib_npz, specs, CalibrationDataError, context)
    not_float = [f"{spec.name} ({spec.describe()})" for spec in specs if spec.dtype != np.float32]
    if not_float:
        raise BadModelError(f"{context}: full-integer TFLite quantizes float32 inputs to int8, but "
                            f"{job.bundle.name} takes {', '.join(not_float)}; use int8-static for this model")
    ordered = job.work_dir / "calib-inputs.npz"
    np.savez(ordered, **{f"input_{index:03d}": arrays[spec.name] for index, spec in enumerate(specs)})
    return ordered


def _convert(python: Path, job: RecipeJob, calib: Path) -> dict[str, Any]:
    report_path, onnx_copy = job.work_dir / "convert-report.json", job.work_dir / "model.onnx"
    # onnx2tf rewrites the file it is given (sng4onnx names the nodes in place): it gets a copy.
    shutil.copyfile(job.bundle.onnx_path, onnx_copy)
    command = [str(python), str(VENV_FILES / "convert.py"), str(onnx_copy), str(calib),
               str(job.out), str(report_path), str(job.work_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, cwd=job.work_dir)
    outcome = json.loads(report_path.read_text()) if report_path.is_file() else None
    if outcome is not None and "error" in outcome:
        failed = outcome["error"]
        raise BadModelError(f"recipe {NAME}: {failed['step']} failed for {job.bundle.name}: {failed['message']}")
    if result.returncode != 0 or outcome is None:
        tail = " | ".join(line for line in (result.stdout + result.stderr).splitlines()[-5:] if line.strip())
        raise ConverterEnvironmentError(f"recipe {NAME}: the converter exited with {result.returncode}: {tail}")
    return outcome


def converter_python(progress: ProgressFn | None = None) -> Path:
    """The Python of the TensorFlow environment, made first if needed (pip, several minutes)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    if python.is_file():
        return python
    if os.environ.get(VENV_ENV_VAR):
        raise ConverterEnvironmentError(f"{VENV_ENV_VAR}={venv} has no bin/python; unset it to let "
                                        f"{NAME} make the environment, or point it at a venv with "
                                        f"{VENV_FILES / 'requirements.txt'} installed")
    report(progress, "install converter", 0.0)
    with staged_directory(venv) as staging:
        _install(staging)
    report(progress, "install converter", 1.0)
    return python


def venv_dir() -> Path:
    """EDGEFARM_TFLITE_VENV, else a directory in the user cache named after the requirements' digest."""
    if os.environ.get(VENV_ENV_VAR):
        return Path(os.environ[VENV_ENV_VAR])
    from platformdirs import user_cache_path

    digest = sha256_file(VENV_FILES / "requirements.txt")[:6] + sha256_file(VENV_FILES / "no-deps.txt")[:6]
    return user_cache_path("edgefarm") / f"tflite-venv-{digest}"


def _install(venv: Path) -> None:
    # A venv is not relocatable by its console scripts, but `bin/python` finds its pyvenv.cfg
    # beside it after the rename; we only ever run bin/python.
    _run_or_raise([sys.executable, "-m", "venv", str(venv)], "creating the venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    requirements = venv / "requirements.txt"
    requirements.write_text(_requirements_for_this_machine())
    _run_or_raise([*pip, "-r", str(requirements)], "pip install -r requirements.txt")
    _run_or_raise([*pip, "--no-deps", "-r", str(VENV_FILES / "no-deps.txt")], "pip install --no-deps onnx2tf")


def _requirements_for_this_machine() -> str:
    text = (VENV_FILES / "requirements.txt").read_text()
    # tensorflow-cpu has x86_64 wheels only; on aarch64 the plain package is the CPU build.
    if platform.machine() in ("x86_64", "AMD64"):
        return text
    return re.sub(r"^tensorflow-cpu==", "tensorflow==", text, flags=re.MULTILINE)


def _run_or_raise(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if result.returncode != 0:
        tail = " | ".join(line for line in (result.stdout + result.stderr).splitlines()[-4:] if line.strip())
        raise ConverterEnvironmentError(f"recipe {NAME}: {what} failed ({result.returncode}): {tail}; "
                                        f"PyPI must be reachable the first time, or set {VENV_ENV_VAR}")


def compile_for_edgetpu(tflite: Path, work_dir: Path) -> dict[str, Any]:
    """edgetpu_compiler's verdict: ops on the Edge TPU and on the CPU; or why it did not run."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return {"compiled": False, "reason": NO_EDGETPU}
    result = subprocess.run([compiler, "-s", "-o", str(work_dir), str(tflite)], capture_output=True, text=True,
                            timeout=CONVERT_TIMEOUT_S)
    compiled = work_dir / f"{tflite.stem}_edgetpu.tflite"
    if result.returncode != 0 or not compiled.is_file():
        return {"compiled": False, "reason": f"edgetpu_compiler exited with {result.returncode}: "
                                             f"{result.stdout.strip().splitlines()[-1:]}"}
    shutil.copyfile(compiled, tflite.with_name(compiled.name))
    return {"compiled": True, "file": compiled.name, **edgetpu_op_counts(result.stdout)}


def edgetpu_op_counts(compiler_output: str) -> dict[str, int]:
    """The two counts edgetpu_compiler -s prints ("Number of operations that will run on Edge TPU: 62")."""
    counts = {}
    for key, where in (("edgetpu_ops", "Edge TPU"), ("cpu_ops", "CPU")):
        found = re.search(rf"Number of operations that will run on {where}:\s*(\d+)", compiler_output)
        counts[key] = int(found.group(1)) if found else -1
    return counts


def tflite_top1_accuracy(tflite: Path, eval_npz: Path) -> float:
    """Top-1 accuracy of a .tflite classifier with LiteRT's reference kernels, NCHW data moved to NHWC."""
    from edgefarm.agent.backends.base import BackendOptions
    from edgefarm.agent.backends.litert import load

    context = f"top-1 accuracy of {tflite}"
    # builtin: the reference kernels, and no "Created XNNPACK delegate" line on stderr (compressors never print).
    engine = load(str(tflite), BackendOptions(threads=1, batch_size=1, delegate="builtin"))
    try:
        spec = engine.inputs[0]
        with np.load(eval_npz, allow_pickle=False) as arrays:
            x = arrays["x"] if "x" in arrays.files else arrays[next(n for n in arrays.files if n != "y")]
        x = _as_layout(x.astype(np.float32), list(spec.shape), context)
        labels = load_labels(eval_npz, len(x), context)
        scores = np.concatenate([engine.run({spec.name: x[row:row + 1]})[0].reshape(1, -1) for row in range(len(x))])
    finally:
        engine.close()
    return top1_hits(scores, labels) / len(labels)


def _as_layout(x: np.ndarray, shape: list[int], context: str) -> np.ndarray:
    if list(x.shape[1:]) == shape[1:]:
        return x
    if x.ndim == 4 and list(x.transpose(0, 2, 3, 1).shape[1:]) == shape[1:]:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # onnx2tf made the NCHW input NHWC
    raise EvalDataError(f"{context}: samples of shape {list(x.shape[1:])} do not fit the model's input {shape}")
