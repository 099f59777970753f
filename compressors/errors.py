"""Errors a user can act on: each message names what failed, where, and how to fix it."""
from __future__ import annotations


class CompressorError(Exception):
    """Base of every error the compressors raise on purpose (not a bug)."""


class UnknownModelError(CompressorError):
    """A model name that is not in the registry."""


class BadModelError(CompressorError):
    """A model file that is missing, not ONNX, truncated or invalid."""


class UnknownRecipeError(CompressorError):
    """A recipe name that is not in the registry."""


class RecipeParamsError(CompressorError):
    """A recipe parameter that the recipe does not take, or a value it does not accept."""


class CalibrationDataError(CompressorError):
    """Calibration data that is missing or does not fit the model's inputs."""


class EvalDataError(CompressorError):
    """Evaluation data that is missing or does not fit the model."""
