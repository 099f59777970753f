"""The models the farm knows by name, and a user's own ONNX file.

Models are listed in one explicit dict so a name can never go missing because
a module was not imported. A model's `build` returns its cached bundle,
creating it first when needed.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgefarm.compressors.errors import BadModelError, UnknownModelError
from edgefarm.compressors.models import digits_cnn, minilm, mobilenet_v2
from edgefarm.compressors.models.bundle import ModelBundle
from edgefarm.compressors.models.onnx_file import check_onnx_file
from edgefarm.compressors.progress import ProgressFn

__all__ = [
    "MODELS", "BadModelError", "ModelBundle", "UnknownModelError",
    "bundle_from_file", "get_model", "model_names",
]

ModelBuilder = Callable[[Path, ProgressFn | None], ModelBundle]

MODELS: dict[str, ModelBuilder] = {
    digits_cnn.NAME: digits_cnn.build,
    mobilenet_v2.NAME: mobilenet_v2.build,
    mobilenet_v2.FULL.name: mobilenet_v2.build_full,
    minilm.NAME: minilm.build,
}


def model_names() -> list[str]:
    """The built-in model names, sorted."""
    return sorted(MODELS)


def get_model(name: str, cache_dir: Path, progress: ProgressFn | None = None) -> ModelBundle:
    """The named built-in model, built into `cache_dir` at first use and reused after."""
    build = MODELS.get(name)
    if build is None:
        raise UnknownModelError(f"unknown model {name!r}; valid models: {', '.join(model_names())}")
    return build(cache_dir, progress)


def bundle_from_file(
    path: Path, calib_npz: Path | None = None, eval_npz: Path | None = None
) -> ModelBundle:
    """Wrap a user's ONNX classifier; raises BadModelError unless it is a whole, valid model."""
    path = Path(path)
    check_onnx_file(path)
    calib = None if calib_npz is None else Path(calib_npz)
    evaluation = None if eval_npz is None else Path(eval_npz)
    return ModelBundle(path.stem, path, calib, evaluation, metric="top1")
