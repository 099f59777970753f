"""Compression steps that work on the PyTorch model: pruning, fine-tuning, distillation and QAT.

This registry says which steps exist and which parameters each takes; it imports neither
torch nor the step modules. A step's module is imported when the step runs (`load`), so
checking a chain or reading a cached variant never pays torch's import time.

Every step function has the same shape, `run(model, params, data, progress) -> TorchModel`,
and runs inside `training.deterministic_torch`, so the same input gives the same weights.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

ParamValue = float | int | str


@dataclass(frozen=True)
class Param:
    """One step parameter: its type is the default's (float, int or str).

    Numbers must lie in [low, high], with `low_open` / `high_open` excluding an end;
    a string must be one of `choices`.
    """

    name: str
    default: ParamValue
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def check(self, value: ParamValue) -> str | None:
        """Why `value` is not acceptable, or None when it is (an int passes for a float)."""
        kind = type(self.default)
        if kind is str:
            return None if value in self.choices else f"is not one of {', '.join(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
            return f"must be {'an integer' if kind is int else 'a number'}"
        return None if self._in_range(value) else f"is outside {self.interval()}"

    def interval(self) -> str:
        """The accepted range in interval notation, e.g. "[0, 1)"."""
        low = "(" if self.low_open else "["
        high = ")" if self.high_open else "]"
        return f"{low}{self.low:g}, {self.high:g}{high}"

    def _in_range(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


@dataclass(frozen=True)
class TorchStep:
    """A step on the PyTorch model; `module`.`function` in this package runs it.

    quantizes: the step trains the model for int8; the chain's int8-static step, with the same
    reduce_range, must follow it to quantize (nothing else may).
    """

    name: str
    summary: str
    module: str
    function: str
    params: tuple[Param, ...] = ()
    quantizes: bool = False

    def load(self) -> Callable:
        """The step function (imports its module, and torch with it)."""
        return getattr(importlib.import_module(f"edgefarm.compressors.torch_steps.{self.module}"), self.function)


_AMOUNT = Param("amount", 0.5, 0.0, 1.0, high_open=True)
_EPOCHS = Param("epochs", 3, 1, 1000)


def _learning_rate(default: float) -> Param:
    return Param("lr", default, 0.0, 1.0, low_open=True)


TORCH_STEPS: dict[str, TorchStep] = {
    "unstructured-prune": TorchStep(
        "unstructured-prune", "zero the smallest weights of every Conv/Linear layer", "prune", "unstructured",
        (_AMOUNT, Param("scope", "global", choices=("global", "layer"))),
    ),
    "structured-prune": TorchStep(
        "structured-prune", "remove whole channels (torch-pruning): a smaller dense model", "prune", "structured",
        (_AMOUNT, Param("round_to", 8, 1, 64)),
    ),
    "sparse24": TorchStep(
        "sparse24", "2:4 semi-structured sparsity for sparse tensor cores", "prune", "semi_structured",
    ),
    "finetune": TorchStep(
        # 20 epochs at 3e-3: one-shot pruning takes a model to chance, and 3 epochs at 1e-3 (the first
        # default) left structured-pruned mobilenet-v2 at 73.6 % where fp32 scores 96.9 %.
        "finetune", "train on the training data; pruned weights stay zero", "finetune", "finetune",
        (Param("epochs", 20, 1, 1000), _learning_rate(3e-3)),
    ),
    "distill": TorchStep(
        "distill", "train a narrower student on the model's softened outputs", "distill", "distill",
        (Param("width", 0.35, 0.0, 1.0, low_open=True), Param("epochs", 10, 1, 1000),
         Param("temperature", 4.0, 0.0, 100.0, low_open=True), Param("alpha", 0.7, 0.0, 1.0),
         _learning_rate(5e-3)),
    ),
    "qat": TorchStep(
        "qat", "quantization-aware fine-tuning for the int8-static step that follows", "qat", "qat",
        # lr 1e-4: the trained model is already where it should be; 3e-4 cost mobilenet-v2-w1 1.1 points.
        (_EPOCHS, _learning_rate(1e-4), Param("reduce_range", "yes", choices=("yes", "no"))), quantizes=True,
    ),
}
