"""What every torch step works on, and the seeded training loop they share.

Steps train on the model's training split (TorchSource.train_npz), never on its
evaluation data, so the accuracy the recipes report stays a held-out figure.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefarm.compressors.progress import ProgressFn, report

if TYPE_CHECKING:
    from torch import Tensor, nn

SEED = 0
BATCH_SIZE = 64


@dataclass(frozen=True)
class TorchModel:
    """A model between steps: the module and how to rebuild it (see TorchSource)."""

    module: nn.Module
    builder: str
    width: float
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class TrainData:
    """The training split as tensors: x float32 inputs, y int64 labels."""

    x: Tensor
    y: Tensor

    @classmethod
    def load(cls, npz: Path) -> TrainData:
        import torch

        with np.load(npz, allow_pickle=False) as arrays:
            return cls(torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]))


@contextlib.contextmanager
def deterministic_torch(torch: Any, seed: int = SEED) -> Iterator[None]:
    """Seed torch and force deterministic kernels, restoring the caller's settings afterwards.

    The controller is a long-lived process: training must not leave its global
    RNG, determinism flag or thread count changed.
    """
    was_deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        # One thread: the models are too small to gain from more, the weights then do not depend on
        # the core count, and on a busy 2-core machine two threads made training several times slower.
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(was_deterministic)


# (model, batch rows) -> loss; rows index TrainData.x / .y and anything precomputed per sample
BatchLoss = Callable[["nn.Module", "Tensor"], "Tensor"]


def train(
    module: nn.Module, sample_count: int, batch_loss: BatchLoss, epochs: int, lr: float,
    progress: ProgressFn | None, phase: str,
) -> None:
    """Adam with a one-cycle schedule over `epochs`; weights that are exactly zero stay zero."""
    import torch

    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    steps_per_epoch = -(-sample_count // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    pruned = zero_masks(module)
    module.train()
    for epoch in range(epochs):
        for rows in torch.randperm(sample_count).split(BATCH_SIZE):
            optimizer.zero_grad()
            batch_loss(module, rows).backward()
            optimizer.step()
            pruned.reapply()
            schedule.step()
        report(progress, phase, (epoch + 1) / epochs)
    module.eval()


def cross_entropy_loss(data: TrainData) -> BatchLoss:
    """The plain supervised loss on the training labels."""
    from torch.nn.functional import cross_entropy

    def batch_loss(module: nn.Module, rows: Tensor) -> Tensor:
        return cross_entropy(module(data.x[rows]), data.y[rows])

    return batch_loss


def prunable_layers(module: nn.Module) -> list[nn.Module]:
    """The Conv and Linear layers, in module order: the ones whose weights pruning zeroes."""
    from torch import nn

    return [layer for layer in module.modules() if isinstance(layer, (nn.Conv2d, nn.Linear))]


@dataclass(frozen=True)
class ZeroMasks:
    """Where the pruned (exactly zero) weights are, so training can put them back to zero after every step.

    Re-zeroing after the optimizer step, rather than masking in forward(), works the same
    whether the weight is used as is or through a parametrization such as QAT's fake quantization.
    """

    masks: tuple[tuple[Tensor, Tensor], ...]  # (weight, 1 where the weight is kept)

    def reapply(self) -> None:
        import torch

        with torch.no_grad():
            for weight, kept in self.masks:
                weight.mul_(kept)


def zero_masks(module: nn.Module) -> ZeroMasks:
    """The zeros of every prunable weight; a dense trained layer has none exactly zero and gets no mask."""
    weights = [trainable_weight(layer) for layer in prunable_layers(module)]
    return ZeroMasks(tuple((w, (w != 0).to(w.dtype)) for w in weights if bool((w == 0).any())))


def trainable_weight(layer: nn.Module) -> Tensor:
    """The weight tensor the optimizer updates: QAT puts the layer's `weight` behind a parametrization."""
    parametrizations = getattr(layer, "parametrizations", None)
    if parametrizations is not None and "weight" in parametrizations:
        return parametrizations.weight.original
    return layer.weight

