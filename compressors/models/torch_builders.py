"""The PyTorch definitions of the models that torch steps (prune, fine-tune, distil, QAT) start from.

BUILDERS maps TorchSource.builder to a function of the width multiplier that returns a
freshly initialised nn.Module; `load_module` rebuilds a TorchSource's model with its weights.
The dict is explicit, so a builder cannot go missing because a module was not imported, and
every builder imports torch (and its own module) only when called: listing or reading cached
models never pays torch's import time.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from edgefarm.compressors.errors import UnknownModelError
from edgefarm.compressors.models.bundle import TorchSource

if TYPE_CHECKING:
    from torch import Tensor, nn


def scaled(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, at least one."""
    return max(1, round(channels * width))


def digits_cnn(width: float = 1.0) -> nn.Module:
    """digits-cnn: 1x8x8 digits in, 10 logits out; width scales every hidden layer."""
    from torch import nn

    conv1, conv2, conv3, hidden = (scaled(c, width) for c in (32, 64, 64, 256))
    return nn.Sequential(
        # Pooling right after the first conv keeps the wide convs on 4x4 maps: training takes seconds.
        nn.Conv2d(1, conv1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Conv2d(conv1, conv2, 3, padding=1), nn.ReLU(),
        nn.Conv2d(conv2, conv3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4 -> 2x2
        nn.Flatten(), nn.Linear(conv3 * 4, hidden), nn.ReLU(), nn.Linear(hidden, 10),
    )


def mobilenet_v2(width: float = 1.0) -> nn.Module:
    """mobilenet-v2: 1x96x96 images in, 10 logits out; width is the paper's multiplier (the zoo model is 0.5)."""
    from edgefarm.compressors.models import mobilenet_v2 as model

    return model.network(width)


def mobilenet_v2_w1(width: float = 1.0) -> nn.Module:
    """mobilenet-v2-w1: the paper's 17 blocks on 1x96x96 images; width 1.0 is the bundled model."""
    from edgefarm.compressors.models import mobilenet_v2 as model

    return model.network(width, model.PAPER_STAGES)


# TorchSource.builder -> module factory. A builder defined in its model's own module is wrapped
# in a function that imports that module when called.
BUILDERS: dict[str, Callable[[float], nn.Module]] = {
    "digits-cnn": digits_cnn,
    "mobilenet-v2": mobilenet_v2,
    "mobilenet-v2-w1": mobilenet_v2_w1,
}


def build(builder: str, width: float = 1.0) -> nn.Module:
    """A freshly initialised `builder` model; UnknownModelError lists the valid builder names."""
    make = BUILDERS.get(builder)
    if make is None:
        raise UnknownModelError(f"unknown torch builder {builder!r}; valid builders: {', '.join(sorted(BUILDERS))}")
    return make(width)


def load_module(source: TorchSource) -> nn.Module:
    """The source's model with its weights, in eval mode.

    A structurally pruned model has fewer channels than its builder makes: its layers are
    first resized to the shapes in the state dict, so the saved file stays a plain state_dict.
    """
    import torch

    state = torch.load(source.state_dict, map_location="cpu", weights_only=True)
    module = build(source.builder, source.width)
    fit_to_state_dict(module, state)
    module.load_state_dict(state)
    return module.eval()


def fit_to_state_dict(module: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Resize every parameter and buffer whose shape differs from `state`, then the layers' size attributes."""
    import torch

    for name, tensor in state.items():
        owner_name, _, attribute = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        current = getattr(owner, attribute, None)
        if current is None or current.shape == tensor.shape:
            continue
        if isinstance(current, torch.nn.Parameter):
            setattr(owner, attribute, torch.nn.Parameter(torch.empty_like(tensor)))
        else:
            owner.register_buffer(attribute, torch.empty_like(tensor))
    for layer in module.modules():
        _fit_size_attributes(layer)


def _fit_size_attributes(layer: Any) -> None:
    # Conv, Linear and BatchNorm read these attributes in forward() and repr(); ONNX export checks them.
    from torch import nn

    if isinstance(layer, nn.Conv2d):
        depthwise = layer.groups > 1 and layer.groups == layer.in_channels and layer.weight.shape[1] == 1
        layer.out_channels = layer.weight.shape[0]
        if depthwise:
            layer.groups = layer.in_channels = layer.out_channels
        else:
            layer.in_channels = layer.weight.shape[1] * layer.groups
    elif isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = layer.weight.shape
    elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.running_mean is not None:
        layer.num_features = layer.running_mean.shape[0]
