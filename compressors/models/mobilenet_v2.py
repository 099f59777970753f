"""mobilenet-v2 and mobilenet-v2-w1: MobileNetV2s on 96x96x1 images, trained at first use on upscaled digits.

96x96 is MLPerf Tiny's visual-wake-words input size; the network has MobileNetV2's parts
(Sandler et al. 2018): inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear
projection, a residual where shapes match), ReLU6 and a width multiplier. The images are
scikit-learn's bundled 8x8 digits, scaled up bilinearly: nothing to download, the same
train/eval split as digits-cnn, and accuracy that says whether a variant still works.
mobilenet-v2 is microcontroller-class (width 0.5, fewer blocks, earlier downsampling: 5 M MACs,
0.2 ms), to train in well under 90 s on one core for the tests. mobilenet-v2-w1 is the paper's
network (all 17 inverted-residual blocks, width 1.0: 54 M MACs, about 2 ms), the class of model
edge users ship; make bench and the docs use it, as a 0.2 ms model lets fixed per-node costs pass
for compression effects. torch is imported only when training; torchvision is not needed.
"""
from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefarm.compressors.cache import is_current_model, staged_directory
from edgefarm.compressors.models.bundle import ModelBundle, TorchSource
from edgefarm.compressors.progress import ProgressFn, report

if TYPE_CHECKING:
    from torch import nn

NAME = "mobilenet-v2"
SEED = 0
IMAGE_SIZE = 96
INPUT_SHAPE = (1, 1, IMAGE_SIZE, IMAGE_SIZE)
CLASSES = 10
CALIB_COUNT = 200
PEAK_LEARNING_RATE = 3e-3
# Bump when the files or the training change, so an older cache entry is rebuilt.
CACHE_FORMAT = 1
FILES = ("model.onnx", "calib.npz", "eval.npz", "train.npz", "state_dict.pt", "training.json")

STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
# (expansion, output channels at width 1, repeats, stride of the first repeat), the paper's Table 2
# order. Changed from the paper, to train in seconds: stride 2 in the first stage (paper: 1) leaves
# 24x24 maps after it instead of 48x48, where most of the compute was; fewer repeats; no stride in
# the 160-channel stage, whose input is already 3x3.
STAGES = (
    (1, 16, 1, 2),
    (6, 24, 1, 2),
    (6, 32, 2, 2),
    (6, 64, 2, 2),
    (6, 96, 1, 1),
    (6, 160, 1, 1),
    (6, 320, 1, 1),
)
PAPER_STAGES = (  # Table 2 as published: 17 blocks
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclass(frozen=True)
class Architecture:
    """One bundled MobileNetV2: its registry name, width multiplier, stages and training length."""

    name: str
    width: float
    stages: tuple[tuple[int, int, int, int], ...]
    epochs: int


SMALL = Architecture(NAME, 0.5, STAGES, epochs=6)
FULL = Architecture("mobilenet-v2-w1", 1.0, PAPER_STAGES, epochs=6)
ARCHITECTURES = {arch.name: arch for arch in (SMALL, FULL)}


def build(cache_dir: Path, progress: ProgressFn | None = None, arch: Architecture = SMALL) -> ModelBundle:
    """Return the cached model, training and exporting it first if it is not cached yet."""
    model_dir = cache_dir / "models" / arch.name
    if not is_current_model(model_dir, CACHE_FORMAT, FILES):
        shutil.rmtree(model_dir, ignore_errors=True)  # an older format, or damaged
        with staged_directory(model_dir) as staging:
            _train_and_export(staging, progress, arch)
    source = TorchSource(arch.name, model_dir / "state_dict.pt", model_dir / "train.npz", INPUT_SHAPE, arch.width)
    return ModelBundle(
        arch.name, model_dir / "model.onnx", model_dir / "calib.npz", model_dir / "eval.npz", metric="top1",
        torch_source=source,
    )


def build_full(cache_dir: Path, progress: ProgressFn | None = None) -> ModelBundle:
    """mobilenet-v2-w1: the paper's MobileNetV2 at width 1.0 (about 3.5 min to train on one core)."""
    return build(cache_dir, progress, FULL)


def network(width: float = 1.0, stages: tuple[tuple[int, int, int, int], ...] = STAGES) -> nn.Module:
    """An untrained MobileNetV2 for 1-channel images and 10 classes; width scales every layer but the head."""
    from torch import nn

    block = _inverted_residual_type()
    channels = divisible_by_8(STEM_CHANNELS * width)
    layers = _conv_bn_relu6(1, channels, kernel=3, stride=2)
    for expansion, base_channels, repeats, stride in stages:
        out_channels = divisible_by_8(base_channels * width)
        for repeat in range(repeats):
            layers.append(block(channels, out_channels, stride if repeat == 0 else 1, expansion))
            channels = out_channels
    head = divisible_by_8(HEAD_CHANNELS * max(1.0, width))  # the paper keeps 1280 below width 1
    layers += _conv_bn_relu6(channels, head, kernel=1, stride=1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(head, CLASSES)]
    return nn.Sequential(*layers)


def divisible_by_8(channels: float) -> int:
    """The paper's rounding: the nearest multiple of 8, never more than 10 % below `channels`."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1) -> list[Any]:
    from torch import nn

    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(),
    ]


@functools.cache
def _inverted_residual_type() -> type:
    """The block class, made at first use so that importing this module does not import torch."""
    from torch import nn

    class InvertedResidual(nn.Module):
        """1x1 expand -> 3x3 depthwise -> 1x1 linear projection; adds its input when the shapes match."""

        def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
            super().__init__()
            hidden = in_channels * expansion
            layers = _conv_bn_relu6(in_channels, hidden, kernel=1, stride=1) if expansion != 1 else []
            layers += _conv_bn_relu6(hidden, hidden, kernel=3, stride=stride, groups=hidden)
            # Linear bottleneck: no activation after the projection (ReLU would destroy information there).
            layers += [nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and in_channels == out_channels

        def forward(self, x: Any) -> Any:
            return x + self.block(x) if self.residual else self.block(x)

    return InvertedResidual


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_eval, y_eval): digits-cnn's split with x scaled up to [N,1,96,96] float32."""
    import torch

    from edgefarm.compressors.models.digits_cnn import load_split as digits_split

    x_train, y_train, x_eval, y_eval = digits_split()
    return _upscaled(torch, x_train), y_train, _upscaled(torch, x_eval), y_eval


def _upscaled(torch: Any, images: np.ndarray) -> np.ndarray:
    size = (IMAGE_SIZE, IMAGE_SIZE)
    resized = torch.nn.functional.interpolate(torch.from_numpy(images), size=size, mode="bilinear",
                                              align_corners=False)
    return resized.numpy().astype(np.float32)


def _train_and_export(out_dir: Path, progress: ProgressFn | None, arch: Architecture) -> None:
    import torch

    from edgefarm.compressors.torch_steps.export import export_onnx
    from edgefarm.compressors.torch_steps.training import deterministic_torch

    x_train, y_train, x_eval, y_eval = load_split()
    with deterministic_torch(torch, SEED):
        started = time.perf_counter()
        net = _train(x_train, y_train, progress, arch)
        train_seconds = time.perf_counter() - started
        report(progress, f"export {arch.name}", 0.0)
        export_onnx(net, INPUT_SHAPE, out_dir / "model.onnx")
        torch.save(net.state_dict(), out_dir / "state_dict.pt")
        accuracy = _torch_accuracy(torch, net, x_eval, y_eval)
    np.savez(out_dir / "calib.npz", x=x_train[:CALIB_COUNT], y=y_train[:CALIB_COUNT])
    np.savez(out_dir / "eval.npz", x=x_eval, y=y_eval)
    np.savez(out_dir / "train.npz", x=x_train, y=y_train)
    _write_training_record(out_dir, net, train_seconds, accuracy, torch.__version__, arch)
    report(progress, f"export {arch.name}", 1.0)


def _train(x_train: np.ndarray, y_train: np.ndarray, progress: ProgressFn | None, arch: Architecture) -> Any:
    import torch

    from edgefarm.compressors.torch_steps.training import TrainData, cross_entropy_loss, train

    net = network(arch.width, arch.stages)
    data = TrainData(torch.from_numpy(x_train), torch.from_numpy(y_train))
    train(net, len(y_train), cross_entropy_loss(data), arch.epochs, PEAK_LEARNING_RATE, progress,
          f"train {arch.name}")
    return net


def _torch_accuracy(torch: Any, net: Any, x_eval: np.ndarray, y_eval: np.ndarray) -> float:
    with torch.no_grad():
        predicted = net(torch.from_numpy(x_eval)).argmax(dim=1).numpy()
    return float((predicted == y_eval).mean())


def _write_training_record(out_dir: Path, net: Any, train_seconds: float, accuracy: float, version: str,
                           arch: Architecture) -> None:
    record = {
        "model": arch.name, "cache_format": CACHE_FORMAT, "seed": SEED, "epochs": arch.epochs, "width": arch.width,
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(train_seconds, 3), "eval_top1_torch": accuracy, "torch_version": version,
    }
    (out_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
