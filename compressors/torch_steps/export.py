"""PyTorch model -> ONNX file, with the same interface (names, opset, dynamic batch) as the model it came from."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
