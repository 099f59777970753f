"""Pruning steps: unstructured magnitude, structured channel removal, and 2:4 semi-structured.

Each zeroes or removes weights in one shot and leaves recovery to a following `finetune`
step, which keeps every zero it is given (training.zero_masks).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgefarm.compressors.errors import CompressorError
from edgefarm.compressors.progress import ProgressFn, report
from edgefarm.compressors.torch_steps import ParamValue
from edgefarm.compressors.torch_steps.training import TorchModel, TrainData, prunable_layers

if TYPE_CHECKING:
    from torch import Tensor, nn

GROUP, KEPT = 4, 2  # 2:4 — in every 4 consecutive weights along the input dimension, 2 stay


def unstructured(
    model: TorchModel, params: Mapping[str, ParamValue], data: TrainData, progress: ProgressFn | None
) -> TorchModel:
    """Zero the `amount` fraction of smallest-magnitude weights, over all layers (global) or in each layer."""
    from torch.nn.utils import prune

    report(progress, "unstructured-prune", 0.0)
    targets = [(layer, "weight") for layer in prunable_layers(model.module)]
    if params["scope"] == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=params["amount"])
    else:
        for layer, name in targets:
            prune.l1_unstructured(layer, name, amount=params["amount"])
    for layer, name in targets:
        prune.remove(layer, name)  # permanent: the zeros go into `weight`, the mask and hook go away
    report(progress, "unstructured-prune", 1.0)
    return model


def structured(
    model: TorchModel, params: Mapping[str, ParamValue], data: TrainData, progress: ProgressFn | None
) -> TorchModel:
    """Remove the `amount` fraction of channels of every layer, by L2 norm, keeping the graph consistent.

    torch-pruning follows the dependencies (a conv's removed output channels are removed from
    the next layer's inputs, through Flatten into a Linear), so the result is a smaller dense
    model that any runtime runs faster. The last layer's outputs are the classes: never pruned.
    """
    import torch

    tp = _torch_pruning()
    report(progress, "structured-prune", 0.0)
    module = model.module
    pruner = tp.pruner.MetaPruner(
        module, torch.zeros(model.input_shape), importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=float(params["amount"]), ignored_layers=[prunable_layers(module)[-1]],
        round_to=int(params.get("round_to", 1)),  # channel counts in multiples the int8/SIMD kernels like
    )
    pruner.step()
    report(progress, "structured-prune", 1.0)
    return model


def _torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError:
        raise CompressorError("step structured-prune needs the torch-pruning package; install it with "
                              "pip install torch-pruning (the controller extra includes it)") from None
    return torch_pruning


def semi_structured(
    model: TorchModel, params: Mapping[str, ParamValue], data: TrainData, progress: ProgressFn | None
) -> TorchModel:
    """In every group of 4 consecutive weights along the input dimension keep the 2 largest (2:4).

    That is the pattern NVIDIA's sparse tensor cores (Ampere and later, TensorRT's sparse
    weights option) run at up to twice the dense speed. Layers whose input size is not a
    multiple of 4 (such as a first conv on 1 channel) stay dense, as TensorRT keeps them.
    """
    import torch

    report(progress, "sparse24", 0.0)
    with torch.no_grad():
        for layer in sparse24_layers(model.module):
            layer.weight.mul_(_to_input_last(_keep_2_of_4(_to_input_last(layer.weight))))
    report(progress, "sparse24", 1.0)
    return model


def sparse24_layers(module: nn.Module) -> list[nn.Module]:
    """The layers that 2:4 sparsity applies to: Conv/Linear with an input size divisible by 4."""
    return [layer for layer in prunable_layers(module) if layer.weight.shape[1] % GROUP == 0]


def follows_2to4(weight: Tensor) -> bool:
    """Whether every group of 4 along the input dimension (dim 1) has exactly 2 nonzero weights."""
    groups = _to_input_last(weight).reshape(-1, GROUP)
    return bool(((groups != 0).sum(dim=1) == KEPT).all())


def _to_input_last(weight: Tensor) -> Tensor:
    """Conv [out, in, kh, kw] <-> [out, kw, kh, in]; Linear [out, in] unchanged.

    The permutation swaps dim 1 with the last one, so applying it twice gives the original.
    """
    order = list(range(weight.dim()))
    order[1], order[-1] = order[-1], order[1]
    return weight.permute(order)


def _keep_2_of_4(weight: Tensor) -> Tensor:
    """A 0/1 mask of the weight's shape (input dimension last) keeping the 2 largest magnitudes of each 4."""
    import torch

    groups = weight.detach().abs().reshape(-1, GROUP)
    mask = torch.zeros_like(groups)
    mask.scatter_(1, groups.topk(KEPT, dim=1).indices, 1.0)
    return mask.reshape(weight.shape)
