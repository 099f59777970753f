"""Fine-tuning: a few epochs on the training split, usually right after pruning.

Weights that are exactly zero stay zero (training.zero_masks), so fine-tuning after
unstructured or 2:4 pruning recovers accuracy without undoing the sparsity.
"""
from __future__ import annotations

from collections.abc import Mapping

from edgefarm.compressors.progress import ProgressFn
from edgefarm.compressors.torch_steps import ParamValue
from edgefarm.compressors.torch_steps.training import TorchModel, TrainData, cross_entropy_loss, train


def finetune(
    model: TorchModel, params: Mapping[str, ParamValue], data: TrainData, progress: ProgressFn | None
) -> TorchModel:
    """Train with cross-entropy for `epochs` at a peak learning rate `lr`."""
    train(model.module, len(data.y), cross_entropy_loss(data), int(params["epochs"]), float(params["lr"]),
          progress, "finetune")
    return model
