"""The candidate space of a tune: the registry's recipes (with the parameters that change the model)
crossed with the board's backend routes and thread counts. Nothing here is hand-written per model:
recipes come from edgefarm.compressors.recipes, routes from what the board's agent says it runs."""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgefarm.compressors.recipes import RECIPES, get_recipe, onnx_steps

# Parameters searched per recipe; the rest keep their defaults (weight type and reduce_range rarely pay
# on CPUs, and each doubles the space). Calibration changes only the scales, activation type the kernels.
SEARCHED = {"int8-static": ("calibration", "activation_type")}
# mixed-int8 is searched at its defaults: its layer ranking costs one quantization per layer, per setting.
# int4-weight quantizes MatMul/Gather only (transformers); QAT, pruning and distillation train for
# minutes: they are in the space when --recipes names them.
DEFAULT_SKIP = frozenset({"int4-weight"})
ROUTES = {".onnx": "onnxruntime", ".tflite": "litert"}


@dataclass(frozen=True)
class Recipe:
    """One recipe with fixed parameters: what compress() is asked to build."""

    name: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


@dataclass(frozen=True)
class Candidate:
    """One point of the space: a variant on a backend route with a thread count (0: the runtime's default)."""

    recipe: str          # Recipe.label
    backend: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.recipe} {self.backend}/t{self.threads}"


def recipes(names: Sequence[str] | None, has_torch: bool, max_drop: float) -> list[Recipe]:
    """The recipes to try: `names` as given (each checked by the registry), else every single-step recipe
    with its searched parameters expanded; mixed-int8 gets the tune's own budget where it offers it."""
    if names:
        for name in names:
            get_recipe(name)  # UnknownRecipeError / ChainError with the valid names
        return [r for name in names for r in _expanded(name, max_drop)]
    chosen = [n for n in onnx_steps() if n not in DEFAULT_SKIP]
    return [r for name in chosen for r in _expanded(name, max_drop)]


def _expanded(name: str, max_drop: float) -> list[Recipe]:
    recipe = RECIPES.get(name)
    searched = SEARCHED.get(name, ())
    if recipe is None:
        return [Recipe(name)]
    axes = [[(p, v) for v in recipe.choices[p]] for p in searched]
    fixed = {}
    if "max_drop" in recipe.choices:
        fixed["max_drop"] = _budget_choice(recipe.choices["max_drop"], max_drop)
    return [Recipe(name, {**fixed, **dict(combo)}) for combo in itertools.product(*axes)]


def _budget_choice(choices: Sequence[str], max_drop: float) -> str:
    """The largest offered max_drop within the tune's budget (mixed-int8 spends its budget on speed)."""
    within = [c for c in choices if float(c) <= max_drop]
    return max(within, key=float) if within else min(choices, key=float)


def thread_counts(cores: int) -> tuple[int, ...]:
    """1 and every core: single-thread often wins on small models (no pool start-up), all cores on big ones."""
    return tuple(sorted({1, max(cores, 1)}))


def routes(artifact: Path, board_backends: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The backends that run this artifact on this board (and that --backends allows)."""
    backend = ROUTES.get(artifact.suffix)
    if backend is None or backend not in board_backends or (wanted and backend not in wanted):
        return []
    return [backend]


def kernel_signature(artifact: Path) -> str:
    """What decides the kernels a runtime picks: op types, tensor types and shapes, never weight values.
    Variants with the same signature (int8-static calibrated by minmax or by entropy) run the same code,
    so one measurement ranks all of them."""
    if artifact.suffix != ".onnx":
        return hashlib.sha256(artifact.read_bytes()).hexdigest()
    import onnx

    graph = onnx.load(str(artifact), load_external_data=False).graph
    parts = [f"{n.op_type}:{len(n.input)}" for n in graph.node]
    parts += [f"{t.data_type}:{tuple(t.dims)}" for t in graph.initializer]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
