"""Quantization-aware training: fine-tune with int8 fake quantization, export QDQ ONNX.

Stages: prepare (wrap every Conv/Linear in FakeQuantized) -> calibrate (input ranges from
training samples) -> train (fake-quantized forward, straight-through gradients) -> freeze
(weight scales fixed). The stage runner then exports the model, the exporter writing each
fake quantization as a QuantizeLinear/DequantizeLinear pair, and export.fold_weight_quantizers
stores the weights as int8.

The scheme is symmetric int8 (zero point 0): activations per tensor, weights per output
channel, quantized at the inputs of every Conv/Linear — the placement TensorRT's explicit
quantization expects, and one ONNX Runtime runs as is. torch.ao's eager QAT was not used:
its converted modules do not export to QDQ ONNX, and it is deprecated in favour of torchao.

This module defines an nn.Module, so it imports torch at the top; only the step registry
imports it, when a qat step runs.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from compressors.progress import ProgressFn, report
from compressors.torch_steps import ParamValue
from compressors.torch_steps.training import TorchModel, TrainData, cross_entropy_loss, prunable_layers, train

INT8_MIN, INT8_MAX = -128, 127
CALIBRATION_SAMPLES = 512  # of the training split; min/max ranges settle well before that
CALIBRATION_BATCH = 64
_TINY_SCALE = 1e-8  # a layer that only ever sees zeros still needs a positive scale


class FakeQuantized(nn.Module):
    """A Conv2d or Linear whose input and weight pass through int8 fake quantization.

    While `observing`, inputs pass unchanged and their largest magnitude sets the input scale.
    The inner layer is still called as a module (through functional_call), so hooks on it —
    MAC counting, for one — keep working.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        channels = layer.weight.shape[0]
        self.register_buffer("input_scale", torch.zeros(()))
        self.register_buffer("input_zero_point", torch.zeros((), dtype=torch.int32))
        self.register_buffer("weight_scale", _channel_scales(layer.weight))
        self.register_buffer("weight_zero_point", torch.zeros(channels, dtype=torch.int32))
        self.observing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.input_scale = torch.maximum(self.input_scale, x.detach().abs().max() / INT8_MAX)
            return self.layer(x)
        x = torch.fake_quantize_per_tensor_affine(x, self.input_scale, self.input_zero_point, INT8_MIN, INT8_MAX)
        # Training: the scales follow the weights as they move; eval and export: the frozen ones.
        scale = _channel_scales(self.layer.weight) if self.training else self.weight_scale
        weight = torch.fake_quantize_per_channel_affine(
            self.layer.weight, scale, self.weight_zero_point, 0, INT8_MIN, INT8_MAX
        )
        return torch.func.functional_call(self.layer, {"weight": weight}, (x,), strict=False)

    def freeze(self) -> None:
        """Fix the weight scales to the current weights and make sure the input scale is usable."""
        self.weight_scale = _channel_scales(self.layer.weight)
        self.input_scale = self.input_scale.clamp(min=_TINY_SCALE)


def _channel_scales(weight: torch.Tensor) -> torch.Tensor:
    magnitudes = weight.detach().abs().amax(dim=tuple(range(1, weight.dim())))
    return (magnitudes / INT8_MAX).clamp(min=_TINY_SCALE)


def qat(
    model: TorchModel, params: Mapping[str, ParamValue], data: TrainData, progress: ProgressFn | None
) -> TorchModel:
    """The model with fake quantization, calibrated and fine-tuned for `epochs` at peak learning rate `lr`."""
    quantized = prepare(model.module)
    calibrate(quantized, data.x[:CALIBRATION_SAMPLES], progress)
    train(quantized, len(data.y), cross_entropy_loss(data), int(params["epochs"]), float(params["lr"]), progress, "qat")
    for layer in _fake_quantized(quantized):
        layer.freeze()
    return TorchModel(quantized.eval(), model.builder, model.width, model.input_shape)


def prepare(module: nn.Module) -> nn.Module:
    """Wrap every Conv/Linear of `module` (in place) in FakeQuantized."""
    targets = {id(layer) for layer in prunable_layers(module)}
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if id(child) in targets:
                setattr(parent, name, FakeQuantized(child))
    return module


def calibrate(module: nn.Module, samples: torch.Tensor, progress: ProgressFn | None) -> None:
    """Set every input scale from the largest input magnitude over `samples`."""
    layers = _fake_quantized(module)
    for layer in layers:
        layer.observing = True
    module.eval()
    with torch.no_grad():
        batches = samples.split(CALIBRATION_BATCH)
        for done, batch in enumerate(batches, start=1):
            module(batch)
            report(progress, "qat calibrate", done / len(batches))
    for layer in layers:
        layer.observing = False
        layer.freeze()


def _fake_quantized(module: nn.Module) -> list[FakeQuantized]:
    return [layer for layer in module.modules() if isinstance(layer, FakeQuantized)]
