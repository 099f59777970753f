"""What a model source hands to the recipes: the ONNX file and its data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelBundle:
    """A float32 ONNX model plus the data the recipes need.

    calib_npz feeds static quantization, eval_npz measures accuracy; either may be
    absent for a user's own model. metric names how accuracy is scored ("top1").
    """

    name: str
    onnx_path: Path
    calib_npz: Path | None
    eval_npz: Path | None
    metric: str
