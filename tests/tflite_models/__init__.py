"""Real .tflite test models made by TensorFlow's own converter, in its own virtual
environment (.venv-tflite/: TensorFlow clashes with the main venv). The first session on a
fresh clone creates it (about 40 s); later sessions reuse the cached models under build/."""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE_MODELS = REPO / "tests" / "tflite_models" / "make_models.py"
TF_VENV = REPO / ".venv-tflite"
# tensorflow-cpu has x86_64 wheels only; on aarch64 the plain package is the CPU build.
TF_PACKAGE = "tensorflow-cpu" if platform.machine() in ("x86_64", "AMD64") else "tensorflow"
TF_REQUIREMENT = f"{TF_PACKAGE}==2.21.0"
MODEL_FILES = ("float32.tflite", "int8.tflite", "uint8.tflite", "conv96.tflite", "dynamic_hw.tflite",
               "sample_input.npy", "reference_output.npy")


def run_or_fail(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


def _tf_python() -> Path:
    """The TensorFlow venv's Python, created on first use (CI starts from a clean clone)."""
    python = TF_VENV / "bin" / "python"
    marker = TF_VENV / "edgefarm-requirement.txt"
    if python.exists() and marker.exists() and marker.read_text() == TF_REQUIREMENT:
        return python
    run_or_fail([sys.executable, "-m", "venv", "--clear", str(TF_VENV)], "creating .venv-tflite")
    run_or_fail([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", TF_REQUIREMENT],
         f"pip install {TF_REQUIREMENT}")
    marker.write_text(TF_REQUIREMENT)
    return python



def build_models() -> Path:
    """Directory with the test models, rebuilt only when the script or TensorFlow pin changes."""
    key = hashlib.sha256(MAKE_MODELS.read_bytes() + TF_REQUIREMENT.encode()).hexdigest()[:12]
    cache = REPO / "build" / "tflite-models" / key
    if not all((cache / name).exists() for name in MODEL_FILES):
        partial = cache.with_name(f"{key}.partial-{os.getpid()}")
        run_or_fail([str(_tf_python()), str(MAKE_MODELS), str(partial)], "make_models.py")
        shutil.rmtree(cache, ignore_errors=True)   # an incomplete cache left by an interrupted run
        partial.replace(cache)
    return cache


