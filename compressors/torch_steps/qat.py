"""Quantization-aware training for the int8 graph ONNX Runtime (or TensorRT) will really run.

The step trains the float model under the quantization the deployment applies, then hands a float
ONNX model to the chain's int8-static step, which quantizes it with the same settings
(edgefarm.compressors.quantize.Int8Settings). So a QAT variant is the same fused graph as int8-static
(every Conv a QLinearConv, residual Adds QLinearAdds, int32 biases) with weights that learned to live
with int8, rather than a graph of its own.

What training simulates, matching what int8-static writes:
  * BatchNorm folded into its Conv first (torch.fx), as ONNX Runtime folds it before quantizing:
    the weights that get quantized are the folded ones;
  * weights: symmetric per output channel, 7-bit (-64..64) with reduce_range, as ONNX Runtime needs
    on x86 without VNNI (vpmaddubsw's 16-bit pair sums saturate with full-range weights: that bug
    cost the first QAT 36 points), else 8-bit (-127..127) for TensorRT and ARM;
  * activations: asymmetric uint8 per tensor on every tensor a quantized op reads: the model input,
    ReLU/ReLU6 outputs, projection Conv outputs, residual Add outputs and pool outputs.

Stages: fold -> place fake quantization -> calibrate (activation ranges from training samples) ->
train (straight-through gradients) -> strip (the fake-quantized weights baked in, float export).
torch.ao's eager QAT was not used: its converted modules do not export to QDQ ONNX, and it is
deprecated in favour of torchao, whose PT2E flow needs the dynamo exporter and onnxscript.
"""
from __future__ import annotations

import operator
from collections.abc import Mapping

import torch
from torch import fx, nn

from edgefarm.compressors.progress import ProgressFn, report
from edgefarm.compressors.torch_steps import ParamValue
from edgefarm.compressors.torch_steps.training import TorchModel, TrainData, cross_entropy_loss, prunable_layers, train

UINT8_MAX = 255
CALIBRATION_SAMPLES = 512  # of the training split; min/max ranges settle well before that
CALIBRATION_BATCH = 64
_TINY_SCALE = 1e-8  # a tensor that only ever holds zeros still needs a positive scale
_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)


def weight_range(reduce_range: bool) -> int:
    """The largest |q| of a symmetric int8 weight: ONNX Runtime's 64 with reduce_range, else 127."""
    return 64 if reduce_range else 127


class WeightFakeQuantizer(nn.Module):
    """A parametrization: weight -> fake-quantized weight, symmetric, one scale per output channel."""

    def __init__(self, weight: torch.Tensor, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.register_buffer("zero_point", torch.zeros(weight.shape[0], dtype=torch.int32))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = _channel_scales(weight, self.limit)
        return torch.fake_quantize_per_channel_affine(weight, scale, self.zero_point, 0, -self.limit, self.limit)


class ActivationFakeQuantizer(nn.Module):
    """A tensor -> uint8 fake-quantized tensor. While `observing`, values pass unchanged and the range
    (always holding 0, as ONNX Runtime's calibration makes it) grows to what it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.observing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.low = torch.minimum(self.low, x.detach().min())
            self.high = torch.maximum(self.high, x.detach().max())
            return x
        scale = ((self.high - self.low) / UINT8_MAX).clamp(min=_TINY_SCALE)
        zero_point = int(torch.round(-self.low / scale).clamp(0, UINT8_MAX))
        return torch.fake_quantize_per_tensor_affine(x, float(scale), zero_point, 0, UINT8_MAX)


def _channel_scales(weight: torch.Tensor, limit: int) -> torch.Tensor:
    magnitudes = weight.detach().abs().amax(dim=tuple(range(1, weight.dim())))
    return (magnitudes / limit).clamp(min=_TINY_SCALE)


def qat(
    model: TorchModel, params: Mapping[str, ParamValue], data: TrainData, progress: ProgressFn | None
) -> TorchModel:
    """The model fine-tuned for `epochs` at peak learning rate `lr` under int8 fake quantization,
    returned as a float model (BatchNorm folded) for the chain's int8-static step to quantize."""
    quantized = prepare(model.module, params.get("reduce_range", "yes") == "yes")
    calibrate(quantized, data.x[:CALIBRATION_SAMPLES], progress)
    train(quantized, len(data.y), cross_entropy_loss(data), int(params["epochs"]), float(params["lr"]), progress, "qat")
    return TorchModel(strip(quantized).eval(), model.builder, model.width, model.input_shape)


def prepare(module: nn.Module, reduce_range: bool = True) -> fx.GraphModule:
    """`module` with BatchNorm folded and fake quantization on weights and on every tensor a quantized op reads."""
    from torch.fx.experimental.optimization import fuse
    from torch.nn.utils import parametrize

    folded = fuse(module.eval())  # Conv + BatchNorm -> Conv with the folded weight and bias
    limit = weight_range(reduce_range)
    for layer in prunable_layers(folded):
        parametrize.register_parametrization(layer, "weight", WeightFakeQuantizer(layer.weight, limit))
    _quantize_activations(folded)
    return folded


def _quantize_activations(graph_module: fx.GraphModule) -> None:
    graph = graph_module.graph
    for index, node in enumerate([n for n in graph.nodes if _feeds_a_quantized_op(n, graph_module)]):
        name = f"activation_quantizer_{index}"
        graph_module.add_submodule(name, ActivationFakeQuantizer())
        with graph.inserting_after(node):
            quantized = graph.call_module(name, (node,))
        node.replace_all_uses_with(quantized, delete_user_cb=lambda user, q=quantized: user is not q)
    graph_module.recompile()


def _feeds_a_quantized_op(node: fx.Node, graph_module: fx.GraphModule) -> bool:
    """The model input, and each activation, projection, residual sum and pool output."""
    if node.op == "placeholder":
        return True
    if node.op == "call_function":
        return node.target in (operator.add, torch.add)
    if node.op != "call_module":
        return False
    layer = graph_module.get_submodule(str(node.target))
    if isinstance(layer, _ACTIVATIONS + _POOLS):
        return True
    # A Conv/Linear followed by an activation is quantized after it; one that is not (a projection) at its output.
    followed_by_activation = any(user.op == "call_module" and
                                 isinstance(graph_module.get_submodule(str(user.target)), _ACTIVATIONS)
                                 for user in node.users)
    return isinstance(layer, (nn.Conv2d, nn.Linear)) and not followed_by_activation and bool(node.users) and \
        not _is_graph_output(node)


def _is_graph_output(node: fx.Node) -> bool:
    return any(user.op == "output" for user in node.users)


def calibrate(module: nn.Module, samples: torch.Tensor, progress: ProgressFn | None) -> None:
    """Set every activation range from what it sees over `samples`."""
    quantizers = [layer for layer in module.modules() if isinstance(layer, ActivationFakeQuantizer)]
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


def strip(module: fx.GraphModule) -> fx.GraphModule:
    """The trained float model: fake-quantized weights baked in (int8-static re-derives the very same
    integers from them), activation fake quantization removed."""
    from torch.nn.utils import parametrize

    for layer in prunable_layers(module):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    for node in [n for n in module.graph.nodes if n.op == "call_module" and "activation_quantizer_" in str(n.target)]:
        node.replace_all_uses_with(node.args[0])
        module.graph.erase_node(node)
        module.delete_submodule(str(node.target))
    module.recompile()
    return module
