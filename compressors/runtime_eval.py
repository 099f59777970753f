"""Scoring a variant in another runtime's own format (.pte, .ovir) through the agent's backend for it.

The controller checks a variant's accuracy on its own CPU with the runtime that will run it on the
board, as tflite-int8 does with LiteRT: an ExecuTorch program has no ONNX twin to score instead, and
an OpenVINO int8 IR computes what only OpenVINO computes.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgefarm.agent.backends import get_backend
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.compressors.errors import EvalDataError

BACKEND_OF = {".pte": "executorch", ".ovir": "openvino"}
DYNAMIC_BATCH = 64


def handles(path: Path) -> bool:
    return Path(path).suffix in BACKEND_OF


def first_outputs(path: Path, eval_npz: Path, context: str) -> tuple[np.ndarray, int]:
    """The first output for every sample of `eval_npz` (its `x`, or its one input array), and the sample count."""
    with _engine(path) as engine:
        spec = engine.inputs[0]
        x = _samples(eval_npz, spec.name, context).astype(spec.dtype)
        if list(x.shape[1:]) != [int(d) for d in spec.shape[1:]]:
            raise EvalDataError(f"{context}: samples of shape {list(x.shape[1:])} do not fit the model's input "
                                f"{list(spec.shape)}")
        fixed = int(spec.shape[0]) if spec.shape and int(spec.shape[0]) > 0 else 0
        whole = len(x) - len(x) % fixed if fixed else len(x)
        batch = fixed or DYNAMIC_BATCH
        outputs = [engine.run({spec.name: x[row:row + batch]})[0] for row in range(0, whole, batch)]
    return (np.concatenate(outputs) if outputs else np.empty((0, 0), np.float32)), len(x)


@contextmanager
def _engine(path: Path) -> Iterator[Any]:
    # One thread: scoring must not compete with a measurement running on this machine's local agent.
    engine = get_backend(BACKEND_OF[Path(path).suffix]).load(str(path), BackendOptions(threads=1))
    try:
        yield engine
    finally:
        engine.close()


def _samples(eval_npz: Path, name: str, context: str) -> np.ndarray:
    with np.load(eval_npz, allow_pickle=False) as arrays:
        key = "x" if "x" in arrays.files else name
        if key not in arrays.files:
            raise EvalDataError(f"{context}: {eval_npz} has no array 'x' or {name!r}")
        return arrays[key]
