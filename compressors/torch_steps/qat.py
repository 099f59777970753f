"""Quantization-aware training: fine-tune with int8 fake quantization, export QDQ ONNX.

Stages: prepare (fake quantization on every Conv/Linear) -> calibrate (activation ranges
from training samples) -> train (fake-quantized forward, straight-through gradients) ->
freeze (weight scales fixed). The stage runner then exports the model, the exporter writing
each fake quantization as a QuantizeLinear/DequantizeLinear pair, and
export.fold_weight_quantizers stores the weights as int8.

The scheme is symmetric int8 (zero point 0, as TensorRT requires): weights per output
channel, activations per tensor at the input and the output of every Conv/Linear. Inputs
alone are the placement TensorRT's explicit quantization recommends; the output pair is
what lets ONNX Runtime fuse DQ -> Conv -> Q into an int8 QLinearConv (without it the CPU
provider ran the model in float behind extra Q/DQ ops, about 4x slower than int8-static on
digits-cnn). The weight goes through a parametrization and the activations through forward
hooks, so the layers stay the same Conv/Linear modules: MAC counting, pruning masks and the
exporter see them as before.
torch.ao's eager QAT was not used: its converted modules do not export to QDQ ONNX, and it
is deprecated in favour of torchao.

This module defines nn.Modules, so it imports torch at the top; only the step registry
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


class WeightFakeQuantizer(nn.Module):
    """A parametrization: weight -> int8 fake-quantized weight, one scale per output channel.

    Training: the scales follow the weights as they move; eval and export: the frozen ones.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", _channel_scales(weight))
        self.register_buffer("zero_point", torch.zeros(weight.shape[0], dtype=torch.int32))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = _channel_scales(weight) if self.training else self.scale
        return torch.fake_quantize_per_channel_affine(weight, scale, self.zero_point, 0, INT8_MIN, INT8_MAX)


class ActivationFakeQuantizer(nn.Module):
    """An activation -> int8 fake-quantized activation, one scale for the tensor.

    While `observing`, inputs pass unchanged and the largest magnitude seen sets the scale.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.zeros(()))
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int32))
        self.observing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.scale = torch.maximum(self.scale, x.detach().abs().max() / INT8_MAX)
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, INT8_MIN, INT8_MAX)


def _quantize_input(layer: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (layer.input_quantizer(args[0]),)


def _quantize_output(layer: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return layer.output_quantizer(output)


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
    freeze(quantized)
    return TorchModel(quantized.eval(), model.builder, model.width, model.input_shape)


def prepare(module: nn.Module) -> nn.Module:
    """Put fake quantization on the weight, input and output of every Conv/Linear of `module` (in place)."""
    from torch.nn.utils import parametrize

    for layer in prunable_layers(module):
        parametrize.register_parametrization(layer, "weight", WeightFakeQuantizer(layer.weight))
        layer.input_quantizer, layer.output_quantizer = ActivationFakeQuantizer(), ActivationFakeQuantizer()
        layer.register_forward_pre_hook(_quantize_input)
        layer.register_forward_hook(_quantize_output)
    return module


def calibrate(module: nn.Module, samples: torch.Tensor, progress: ProgressFn | None) -> None:
    """Set every activation scale from the largest magnitude it sees over `samples`."""
    quantizers = _activation_quantizers(module)
    for quantizer in quantizers:
        quantizer.observing = True
    module.eval()
    with torch.no_grad():
        batches = samples.split(CALIBRATION_BATCH)
        for done, batch in enumerate(batches, start=1):
            module(batch)
            report(progress, "qat calibrate", done / len(batches))
    for quantizer in quantizers:
        quantizer.observing = False
        quantizer.scale = quantizer.scale.clamp(min=_TINY_SCALE)


def freeze(module: nn.Module) -> None:
    """Fix every weight scale to the trained weights, for eval and export."""
    for layer in prunable_layers(module):
        quantizer = layer.parametrizations.weight[0]
        quantizer.scale = _channel_scales(layer.parametrizations.weight.original)


def _activation_quantizers(module: nn.Module) -> list[ActivationFakeQuantizer]:
    return [layer for layer in module.modules() if isinstance(layer, ActivationFakeQuantizer)]
