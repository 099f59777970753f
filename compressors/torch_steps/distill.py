"""Knowledge distillation: a narrower copy of the model learns from the model's softened outputs.

The student is the same architecture at width `width` of the builder's full size, freshly
initialised, trained on alpha x T^2 x KL(student_T || teacher_T) + (1 - alpha) x cross-entropy,
where _T means logits / temperature (Hinton et al., 2015; T^2 keeps the soft term's
gradients on the hard term's scale). The teacher's logits are computed once, up front.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from edgefarm.compressors.models.torch_builders import build
from edgefarm.compressors.progress import ProgressFn, report
from edgefarm.compressors.torch_steps import ParamValue
from edgefarm.compressors.torch_steps.training import BatchLoss, TorchModel, TrainData, train

if TYPE_CHECKING:
    from torch import Tensor, nn


def distill(
    model: TorchModel, params: Mapping[str, ParamValue], data: TrainData, progress: ProgressFn | None
) -> TorchModel:
    """The student of width `width`, trained for `epochs` against the teacher `model`."""
    report(progress, "distill", 0.0)
    teacher_logits = _logits(model.module, data.x)
    student = build(model.builder, float(params["width"]))
    batch_loss = _distillation_loss(data, teacher_logits, float(params["temperature"]), float(params["alpha"]))
    train(student, len(data.y), batch_loss, int(params["epochs"]), float(params["lr"]), progress, "distill")
    return TorchModel(student, model.builder, float(params["width"]), model.input_shape)


def _logits(module: nn.Module, x: Tensor) -> Tensor:
    import torch

    with torch.no_grad():
        return module.eval()(x)


def _distillation_loss(data: TrainData, teacher_logits: Tensor, temperature: float, alpha: float) -> BatchLoss:
    from torch.nn.functional import cross_entropy, kl_div, log_softmax

    teacher_log_probs = log_softmax(teacher_logits / temperature, dim=1)

    def batch_loss(student: nn.Module, rows: Tensor) -> Tensor:
        logits = student(data.x[rows])
        soft = kl_div(log_softmax(logits / temperature, dim=1), teacher_log_probs[rows],
                      reduction="batchmean", log_target=True)
        return alpha * temperature**2 * soft + (1 - alpha) * cross_entropy(logits, data.y[rows])

    return batch_loss
