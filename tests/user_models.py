"""ONNX models shaped like the ones users bring, built by the tests themselves (no downloads).

Real published models have dynamic image sizes, several inputs, integer and scalar inputs and
recurrent state; each builder here writes one such model to `out_dir/NAME.onnx` (opset 17,
float32 weights, fixed seeds) and returns its path. Each docstring says which inputs it runs
at and which ones ONNX Runtime rejects, so a test of input-shape handling can use both.
torch is imported only by the builders that export from PyTorch.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgefarm.compressors.models.torch_module import OPSET, export_module

IR_VERSION = 8   # what opset 17 came with: older ONNX Runtimes on the boards still load it
SEED = 20240917
DETECTOR_CLASSES = 8
OCR_CLASSES = 37             # 26 letters, 10 digits and the CTC blank
VAD_SAMPLE_RATE = 16000
VAD_CHUNK = 512
VAD_HIDDEN = 64
VOCAB = 1000


def detector_shape() -> tuple[int, int, int, int]:
    """The input shape `detector` is meant to be benchmarked at."""
    return (1, 3, 320, 320)


def detector(out_dir: Path) -> Path:
    """A small YOLO-like detector: `images` float32 [batch, 3, height, width] -> `detections`
    float32 [batch, anchors, 4 + 8 classes], anchors = (h*w) * (1/64 + 1/256 + 1/1024).

    Runs at 1x3x320x320 (detector_shape(): about 9 ms on one x86 CPU thread with
    ONNX Runtime 1.32) and at any H and W
    divisible by 32. Its neck upsamples the stride-32 and stride-16 features and concatenates
    them with the finer ones, so H or W not divisible by 32 (1x1, 100x100) fails in Concat.
    """
    import torch

    torch.manual_seed(SEED)
    path = out_dir / "detector.onnx"
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "detections": {0: "batch", 1: "anchors"}}
    _export(_tiny_yolo().eval(), (torch.zeros(detector_shape()),), path, ("images",), ("detections",), axes)
    _declare_output_dims(path, "detections", ["batch", "anchors", 4 + DETECTOR_CLASSES])
    return path


def ocr(out_dir: Path) -> Path:
    """A CRNN-like text recogniser without the RNN: `x` float32 [1, 1, 32, width] -> `logits`
    float32 [1, 37, width/4 - 2] (a column of class scores per 4 pixels, as CTC decoding wants).

    Runs at width 128. The last conv has no padding and needs at least 3 columns after the two
    2x2 pools, so any width under 12 (1 in particular) fails in ONNX Runtime's Conv.
    """
    import torch

    torch.manual_seed(SEED)
    path = out_dir / "ocr.onnx"
    _export(_crnn().eval(), (torch.zeros(1, 1, 32, 128),), path, ("x",), ("logits",),
            {"x": {3: "width"}, "logits": {2: "columns"}})
    return path


def two_input(out_dir: Path) -> Path:
    """A classifier with image and tabular inputs, fully static: `image` float32 [1, 3, 64, 64]
    and `meta` float32 [1, 8] -> `scores` float32 [1, 10]. Any other shape fails."""
    import torch

    torch.manual_seed(SEED)
    path = out_dir / "two_input.onnx"
    _export(_two_input().eval(), (torch.zeros(1, 3, 64, 64), torch.zeros(1, 8)), path,
            ("image", "meta"), ("scores",), {})
    return path


def dynamic_classifier(out_dir: Path) -> Path:
    """A classifier with dynamic H and W: `input` float32 [1, 3, height, width] -> `logits`
    float32 [1, 10] through a global average pool. Runs at any H, W >= 8; 3 channels only."""
    import torch

    torch.manual_seed(SEED)
    path = out_dir / "dynamic_classifier.onnx"
    _export(_dynamic_classifier().eval(), (torch.zeros(1, 3, 64, 64),), path,
            ("input",), ("logits",), {"input": {2: "height", 3: "width"}})
    return path


def stateful(out_dir: Path) -> Path:
    """A voice-activity detector shaped like Silero VAD: `input` float32 [1, 512] (one audio
    chunk), `state` float32 [1, 1, 64] (the GRU's hidden state), `sr` int64 scalar (rank 0)
    -> `prob` float32 [1, 1] and `state_out` float32 [1, 1, 64] (feed it back as `state`).

    The graph derives the frame length from the sample rate, frame = sr // 125 + 512 * (sr % 125),
    and reshapes the chunk to [512 / frame, 1, frame] for a GRU whose weights take 128 inputs.
    Only sr = 16000 gives frame 128; with any other sr (1, 8000, 16001, ...) ONNX Runtime raises
    at run time, in Reshape (512 not divisible by the frame) or in the GRU (wrong input size).
    """
    rng = np.random.default_rng(SEED)
    frame_of_16k = VAD_SAMPLE_RATE // 125
    hidden = VAD_HIDDEN
    weights = {
        "gru_W": rng.normal(0, 0.1, (1, 3 * hidden, frame_of_16k)),
        "gru_R": rng.normal(0, 0.1, (1, 3 * hidden, hidden)),
        "gru_B": rng.normal(0, 0.1, (1, 6 * hidden)),
        "head_W": rng.normal(0, 0.3, (hidden, 1)),
        "head_B": rng.normal(0, 0.1, (1,)),
    }
    constants = {name: np.array(value, np.int64) for name, value in (
        ("c125", 125), ("chunk", VAD_CHUNK), ("lead_dims", [-1, 1]), ("axis0", [0]), ("flat_state", [1, hidden]))}
    nodes = [
        helper.make_node("Div", ["sr", "c125"], ["frame_base"]),
        # Rates that are not a multiple of 125 Hz get a frame longer than the chunk: Reshape fails.
        helper.make_node("Mod", ["sr", "c125"], ["frame_rest"]),
        helper.make_node("Mul", ["frame_rest", "chunk"], ["frame_penalty"]),
        helper.make_node("Add", ["frame_base", "frame_penalty"], ["frame"]),
        helper.make_node("Unsqueeze", ["frame", "axis0"], ["frame_1d"]),
        helper.make_node("Concat", ["lead_dims", "frame_1d"], ["frames_shape"], axis=0),
        helper.make_node("Reshape", ["input", "frames_shape"], ["frames"]),
        helper.make_node("GRU", ["frames", "gru_W", "gru_R", "gru_B", "", "state"], ["", "last_h"],
                         hidden_size=hidden, linear_before_reset=1),
        helper.make_node("Identity", ["last_h"], ["state_out"]),
        helper.make_node("Reshape", ["last_h", "flat_state"], ["features"]),
        helper.make_node("Gemm", ["features", "head_W", "head_B"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    inputs = [_value("input", TensorProto.FLOAT, [1, VAD_CHUNK]),
              _value("state", TensorProto.FLOAT, [1, 1, hidden]),
              _value("sr", TensorProto.INT64, [])]
    outputs = [_value("prob", TensorProto.FLOAT, [1, 1]), _value("state_out", TensorProto.FLOAT, [1, 1, hidden])]
    return _save(out_dir / "stateful.onnx", nodes, inputs, outputs, weights, constants)


def shared_symbol(out_dir: Path) -> Path:
    """A tiny sentence encoder: `input_ids` and `attention_mask`, both int64 [batch, seq] with the
    same symbolic dims, -> `embedding` float32 [batch, 16], the masked mean of 32-wide token
    embeddings (vocabulary 1000) through a linear layer.

    Runs with ids in [0, 1000); an id >= 1000 fails in ONNX Runtime's Gather (index out of range).
    """
    rng = np.random.default_rng(SEED)
    weights = {"embeddings": rng.normal(0, 0.5, (VOCAB, 32)), "proj_W": rng.normal(0, 0.2, (32, 16)),
               "proj_B": rng.normal(0, 0.1, (16,))}
    constants = {"seq_axis": np.array([1], np.int64), "feature_axis": np.array([2], np.int64),
                 "eps": np.array(1e-6, np.float32)}
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["tokens"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "feature_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["tokens", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "seq_axis"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "eps"], ["safe_count"]),   # an all-padding row gives zeros, not NaN
        helper.make_node("Div", ["summed", "safe_count"], ["pooled"]),
        helper.make_node("Gemm", ["pooled", "proj_W", "proj_B"], ["embedding"]),
    ]
    inputs = [_value(name, TensorProto.INT64, ["batch", "seq"]) for name in ("input_ids", "attention_mask")]
    outputs = [_value("embedding", TensorProto.FLOAT, ["batch", 16])]
    return _save(out_dir / "shared_symbol.onnx", nodes, inputs, outputs, weights, constants)


ALL = (detector, ocr, two_input, stateful, shared_symbol, dynamic_classifier)


def _export(*args: Any) -> None:
    """export_module, silenced: torch 2.13's TorchScript exporter also warns from its own logging
    set-up ("The feature will be removed"), which export_module does not filter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        export_module(*args)


def _declare_output_dims(path: Path, name: str, dims: list[str | int]) -> None:
    """The TorchScript exporter names a static dim it lost track of ("Transposedetections_dim_2");
    declare the real one."""
    model = onnx.load(str(path))
    output = next(value for value in model.graph.output if value.name == name)
    output.type.CopyFrom(helper.make_tensor_type_proto(output.type.tensor_type.elem_type, dims))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _value(name: str, elem_type: int, dims: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, dims)


def _save(path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], weights: dict[str, np.ndarray],
          constants: dict[str, np.ndarray]) -> Path:
    """Write a hand-built graph: weights as float32 initializers, constants with their own dtype."""
    initializers = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()]
    initializers += [numpy_helper.from_array(value, name) for name, value in constants.items()]
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


# The torch modules are defined inside functions so that importing this file does not import torch.

def _conv(cin: int, cout: int, stride: int = 1) -> Any:
    """conv 3x3 -> batch norm -> SiLU, the YOLO building block (the exporter folds BN into the conv)."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


def _tiny_yolo() -> Any:
    import torch
    from torch import nn

    class TinyYolo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c3, c4, c5 = 64, 128, 192
            self.stem = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), _conv(32, 32))
            self.down3 = nn.Sequential(_conv(32, c3, 2), _conv(c3, c3))
            self.down4 = nn.Sequential(_conv(c3, c4, 2), _conv(c4, c4))
            self.down5 = nn.Sequential(_conv(c4, c5, 2), _conv(c5, c5))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.fuse4 = _conv(c5 + c4, c4)
            self.fuse3 = _conv(c4 + c3, c3)
            self.heads = nn.ModuleList(nn.Conv2d(c, 4 + DETECTOR_CLASSES, 1) for c in (c3, c4, c5))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            p3 = self.down3(self.stem(images))
            p4 = self.down4(p3)
            p5 = self.down5(p4)
            n4 = self.fuse4(torch.cat([self.up(p5), p4], 1))
            n3 = self.fuse3(torch.cat([self.up(n4), p3], 1))
            rows = [head(x).reshape(x.shape[0], 4 + DETECTOR_CLASSES, -1)
                    for head, x in zip(self.heads, (n3, n4, p5), strict=True)]
            return torch.cat(rows, 2).transpose(1, 2)

    return TinyYolo()


def _crnn() -> Any:
    import torch
    from torch import nn

    class Crnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                _conv(1, 32), nn.MaxPool2d(2),                  # 16 x W/2
                _conv(32, 64), nn.MaxPool2d(2),                 # 8 x W/4
                _conv(64, 96), nn.MaxPool2d((2, 1)),            # 4 x W/4
                nn.Conv2d(96, 128, (4, 3)), nn.ReLU(),          # 1 x (W/4 - 2): no padding, on purpose
                nn.Conv2d(128, OCR_CLASSES, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x).squeeze(2)

    return Crnn()


def _two_input() -> Any:
    import torch
    from torch import nn

    class TwoInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.meta = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
            self.head = nn.Linear(32 + 16, 10)

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([self.image(image), self.meta(meta)], 1))

    return TwoInput()


def _dynamic_classifier() -> Any:
    from torch import nn

    return nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
