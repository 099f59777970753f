"""The tune's controller-side phase: build every recipe's variant (cached), score it on the host, and
drop the ones that break the accuracy budget before any board time is spent."""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgefarm.compressors.errors import CompressorError
from edgefarm.compressors.models import ModelBundle
from edgefarm.compressors.recipes import compress
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.prepare import host_fidelity_stats
from edgefarm.controller.planning.job_inputs import JobInputs
from edgefarm.controller.tuning.board import Built
from edgefarm.controller.tuning.space import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostCheck:
    """One recipe as checked on the controller: its quality drop and whether it stays in the search."""

    recipe: str
    quality: float | None      # accuracy on the eval data, else top-1 agreement with fp32 (fidelity)
    drop_points: float | None
    kept: bool
    reason: str


def quality(built: Built) -> tuple[float | None, str]:
    """Accuracy where the model has labels; otherwise fidelity (top-1 agreement with fp32's outputs)."""
    if built.variant.accuracy is not None:
        return built.variant.accuracy, "accuracy"
    agreement = built.fidelity.get("top1_agreement")
    if agreement is None or (isinstance(agreement, float) and math.isnan(agreement)):
        return None, "none"
    return float(agreement), "top-1 agreement with fp32"


def build_all(bundle: ModelBundle, recipes: Sequence[Recipe], inputs: JobInputs, cache_dir,
              ui: RunConsole) -> tuple[dict[str, Built], list[HostCheck]]:
    """Every recipe's variant; a recipe that cannot be built for this model is dropped with its reason."""
    built, failed = {}, []
    for recipe in recipes:
        try:
            variant = compress(bundle, recipe.name, cache_dir, recipe.params,
                               progress=ui.phase_bar(f"compress {recipe.label}"))
        except CompressorError as exc:
            log.info("tune: %s not built: %s", recipe.label, exc)
            failed.append(HostCheck(recipe.label, None, None, False, f"not built: {exc}"))
            continue
        built[recipe.label] = Built(variant, host_fidelity_stats(variant, inputs), inputs)
    return built, failed


def check_budget(built: dict[str, Built], baseline: Built, max_drop: float) -> list[HostCheck]:
    """Quality drop against fp32 on the host; over the budget: dropped before the board sees it."""
    base, _ = quality(baseline)
    checks = []
    for label, b in built.items():
        value, what = quality(b)
        if value is None or base is None:
            checks.append(HostCheck(label, value, None, True, "no labels and no fidelity set: not checked"))
            continue
        drop = round((base - value) * 100, 4)
        kept = drop <= max_drop
        verdict = "within" if kept else "over"
        checks.append(HostCheck(label, value, drop, kept, f"{what} drop {drop:.2f} points, {verdict} {max_drop:g}"))
    return checks
