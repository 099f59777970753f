"""The types the recipes, the chains and the single-step compressors share.

A leaf: it imports no other compressors module that could import it back (errors,
progress and models.bundle import nothing from edgefarm.compressors), so a compressor
names RecipeJob, and chains name Recipe, without importing the registry in recipes.py.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefarm.compressors.errors import RecipeParamsError
from edgefarm.compressors.models.bundle import ModelBundle
from edgefarm.compressors.progress import ProgressFn

__all__ = ["ARTIFACT", "Recipe", "RecipeJob", "RecipeOutcome", "Variant"]

ARTIFACT = "model.onnx"  # the file an ONNX-level recipe writes (job.out) unless it names another


@dataclass(frozen=True)
class Variant:
    """One compressed model in the cache: the artifact and what is known about it.

    params holds every parameter, defaults filled in; duration_s is the time the
    recipe took when it ran (a cache hit returns the original figure). A chain adds
    stats (params, nonzero_params, sparsity, macs, each _before and _after its PyTorch
    steps) and steps (each step's name, params and duration_s; a PyTorch step's accuracy
    and stats too).
    """

    model: str
    recipe: str
    params: Mapping[str, str]
    path: Path
    size_bytes: int
    sha256: str
    accuracy: float | None
    duration_s: float
    stats: Mapping[str, float] = field(default_factory=dict)
    steps: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class RecipeJob:
    """What one recipe run gets: the model, its parameters, a scratch directory and where to write."""

    bundle: ModelBundle
    params: Mapping[str, str]
    work_dir: Path
    out: Path
    progress: ProgressFn | None
    cache_dir: Path | None = None  # where a chain caches its intermediate PyTorch stages


@dataclass(frozen=True)
class RecipeOutcome:
    """What a recipe reports beyond its artifact (a chain's; single-step recipes return None)."""

    stats: Mapping[str, float] = field(default_factory=dict)
    steps: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A named way to compress; `choices` maps each parameter to its accepted values, default first.

    spec is a chain's steps in full (chains.Chain.text), part of the cache identity; a recipe
    that uses_torch needs the model's PyTorch source (ModelBundle.torch_source). artifact is
    the file name the recipe writes (job.out): its suffix picks the backend that runs it.
    """

    name: str
    run: Callable[[RecipeJob], RecipeOutcome | None]
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    uses_calibration: bool = False
    spec: str = ""
    uses_torch: bool = False
    artifact: str = ARTIFACT
    exports_from_program: bool = False   # uses_torch, but a saved torch.export program will do (et-*)

    def resolve(self, params: Mapping[str, str] | None) -> dict[str, str]:
        """Every parameter with defaults filled in, or RecipeParamsError naming the valid choices."""
        given = dict(params or {})
        unknown = sorted(set(given) - set(self.choices))
        if unknown:
            raise RecipeParamsError(
                f"recipe {self.name} has no parameter {', '.join(unknown)}; {self._takes()}"
            )
        for name, value in given.items():
            if value not in self.choices[name]:
                raise RecipeParamsError(f"recipe {self.name}: {name}={value!r} is not one of "
                                        f"{', '.join(self.choices[name])}")
        return {name: given.get(name, values[0]) for name, values in self.choices.items()}

    def _takes(self) -> str:
        if not self.choices:
            return "it takes no parameters"
        takes = (f"{name} ({'|'.join(values)})" for name, values in self.choices.items())
        return "it takes " + ", ".join(takes)
