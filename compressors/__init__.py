"""Model -> variants: the compression side of edgefarm.

`get_model` / `bundle_from_file` give a ModelBundle; `compress` turns it into a
cached Variant with one of the recipes. Nothing here prints: progress goes
through a ProgressFn, failures through the CompressorError subclasses.
"""
from __future__ import annotations

from edgefarm.compressors.errors import (
    BadModelError,
    CalibrationDataError,
    CompressorError,
    EvalDataError,
    RecipeParamsError,
    UnknownModelError,
    UnknownRecipeError,
)
from edgefarm.compressors.models import ModelBundle, bundle_from_file, get_model, model_names
from edgefarm.compressors.progress import ProgressFn
from edgefarm.compressors.recipes import Variant, compress, recipe_names

__all__ = [
    "BadModelError", "CalibrationDataError", "CompressorError", "EvalDataError", "ModelBundle", "ProgressFn",
    "RecipeParamsError", "UnknownModelError", "UnknownRecipeError", "Variant", "bundle_from_file", "compress",
    "get_model", "model_names", "recipe_names",
]
