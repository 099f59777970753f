"""PyTorch model -> ONNX file, with the same interface (names, opset, dynamic batch) as the model it came from."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

OPSET = 17


@dataclass(frozen=True)
class OnnxInterface:
    """A model's graph input and output names and its opset: what callers and data files rely on."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int = OPSET

    @classmethod
    def of(cls, onnx_path: Path) -> OnnxInterface:
        import onnx

        model = onnx.load(str(onnx_path), load_external_data=False)
        weights = {init.name for init in model.graph.initializer}
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
        inputs = tuple(value.name for value in model.graph.input if value.name not in weights)
        return cls(inputs, tuple(value.name for value in model.graph.output), opset)


CLASSIFIER = OnnxInterface(("input",), ("logits",))


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: Path,
                interface: OnnxInterface = CLASSIFIER) -> None:
    """Export `module` (eval mode, batch dimension dynamic) to `path`."""
    import torch

    dynamic = {name: {0: "batch"} for name in interface.inputs + interface.outputs}
    # The legacy TorchScript exporter, on purpose: the dynamo one needs onnxscript, which the
    # controller does not ship. Its deprecation notice (torch >= 2.9) is not news to our users.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                DeprecationWarning)
        torch.onnx.export(
            module.eval(), (torch.zeros(input_shape),), str(path), input_names=list(interface.inputs),
            output_names=list(interface.outputs), dynamic_axes=dynamic, opset_version=interface.opset,
            dynamo=False,
        )


def fold_weight_quantizers(path: Path) -> None:
    """Store quantized weights as int8: replace QuantizeLinear(float weight) by its int8 result.

    The exporter writes fake-quantized weights as float initializer -> QuantizeLinear ->
    DequantizeLinear; folding the first half makes the file about 4x smaller and is the
    form ONNX Runtime's own QDQ quantizer writes. The model computes the same values.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = _constant_values(model)
    kept_nodes = []
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and all(name in constants for name in node.input):
            quantized = _quantize(node, constants)
            model.graph.initializer.append(numpy_helper.from_array(quantized, node.output[0]))
        else:
            kept_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept_nodes)
    _drop_unused(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _constant_values(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            # The exporter stores equal constants (e.g. two all-zero zero points) once, plus Identity copies.
            values[node.output[0]] = values[node.input[0]]
    return values


def _quantize(node: Any, constants: dict[str, np.ndarray]) -> np.ndarray:
    """QuantizeLinear's definition: saturate(round_half_even(x / scale) + zero_point), per axis if given."""
    weight, scale, zero_point = (constants[name] for name in node.input)
    axis = next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 1)
    if scale.ndim == 1:
        shape = [1] * weight.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    quantized = np.rint(weight / scale) + zero_point.astype(np.int32)
    return np.clip(quantized, info.min, info.max).astype(zero_point.dtype)


def _drop_unused(model: Any) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {value.name for value in model.graph.output}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = [n for n in model.graph.node if n.op_type != "Constant" or n.output[0] in used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
