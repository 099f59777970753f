"""What a model source hands to the recipes: the ONNX file, its data, and (for models we
train) the PyTorch source that pruning, fine-tuning, distillation and QAT start from."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TorchSource:
    """How to rebuild the float model in PyTorch.

    builder names a function in edgefarm.compressors.models.torch_builders.BUILDERS that returns the
    nn.Module (e.g. "digits-cnn", "mobilenet-v2"); width scales its channels (distillation
    students); state_dict is torch.save(model.state_dict()); train_npz holds x/y for
    fine-tuning; input_shape is one example input's shape, batch dimension included.
    """

    builder: str
    state_dict: Path
    train_npz: Path
    input_shape: tuple[int, ...]
    width: float = 1.0


@dataclass(frozen=True)
class ModelBundle:
    """A float32 ONNX model plus the data the recipes need.

    calib_npz feeds static quantization, eval_npz measures quality; either may be
    absent for a user's own model. metric names how quality is scored: "top1" for
    classifiers, "cosine" (embedding fidelity to the fp32 model) for encoders.
    torch_source is None for a model that arrives as an ONNX file only. exported_program
    is a user's nn.Module as torch.export saved it (.pt2, bundle_from_torch): what the et-*
    recipes export from when there is no torch_source (it cannot be trained, so chains need
    the torch_source).
    """

    name: str
    onnx_path: Path
    calib_npz: Path | None
    eval_npz: Path | None
    metric: str
    torch_source: TorchSource | None = None
    exported_program: Path | None = None
