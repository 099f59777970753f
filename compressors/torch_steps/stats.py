"""Size and cost of a PyTorch model: parameters, zeros among them, and multiply-accumulates.

MACs are counted by forward hooks on Conv and Linear layers over one example input, the
layers that hold nearly all of a CNN's work. They are dense MACs: unstructured and 2:4
sparsity leave them unchanged (only a sparse kernel skips zeros), structured pruning
lowers them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgefarm.compressors.torch_steps.training import prunable_layers, trainable_weight

if TYPE_CHECKING:
    from torch import nn


def model_stats(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """params, nonzero_params, sparsity (zero fraction of the Conv/Linear weights) and macs."""
    # The stored weights: under QAT, `weight` is their fake-quantized copy, whose rounding adds zeros.
    weights = [trainable_weight(layer) for layer in prunable_layers(module)]
    weight_count = sum(w.numel() for w in weights)
    zero_weights = sum(int((w == 0).sum()) for w in weights)
    params = sum(p.numel() for p in module.parameters())
    return {
        "params": params,
        "nonzero_params": params - sum(int((p == 0).sum()) for p in module.parameters()),
        "sparsity": round(zero_weights / weight_count, 6) if weight_count else 0.0,
        "macs": count_macs(module, input_shape),
    }


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of an input of `input_shape` through Conv and Linear layers."""
    import torch

    counted: list[int] = []
    hooks = [layer.register_forward_hook(lambda layer, _, out: counted.append(_layer_macs(layer, out)))
             for layer in prunable_layers(module)]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(counted)


def _layer_macs(layer: Any, output: Any) -> int:
    # Each output element of a conv takes in/groups x kh x kw MACs; of a Linear, in_features.
    from torch import nn

    if isinstance(layer, nn.Conv2d):
        per_output = layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3]
    else:
        per_output = layer.weight.shape[1]
    return output.numel() * per_output
