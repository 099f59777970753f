"""Synthetic ONNX models built inline (ONNX Runtime's own test style), shared by
benchmarks and tests: no training, no download, deterministic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp_model(path: Path, width: int = 64, depth: int = 2, batch: int | str = "batch") -> Path:
    """[batch, width] float32 → `depth` × (MatMul + Relu) → [batch, width]."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "input"
    for i in range(depth):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Relu", [f"mm{i}"], [f"h{i}"])]
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [batch, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # loadable by older ONNX Runtime builds on the boards
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def mlp_1ms(path: Path) -> Path:
    """Sized to take about a millisecond per run on one x86 core."""
    return mlp_model(path, width=512, depth=4, batch=16)


def vad_frames(path: Path, frames: int = 16) -> Path:
    """Audio frames for tests.user_models.stateful: a stack of 512-sample chunks, a zero state, 16 kHz.
    The model needs a real sample rate: synthetic data (sr=1) fails, as it would for a real VAD."""
    rng = np.random.default_rng(7)
    np.savez(path, input=rng.standard_normal((frames, 1, 512)).astype(np.float32),
             state=np.zeros((1, 1, 64), np.float32), sr=np.array(16000, np.int64))
    return path


def checkpoint_mlp(path: Path, seed: int, noop_layers: int = 0, width: int = 64, depth: int = 2,
                   input_name: str = "input", features: int | str | None = None) -> Path:
    """One "training checkpoint" of a [batch, width] MLP: weights from `seed`, so every checkpoint is
    its own file, and the same inputs, outputs and speed whatever the seed. `noop_layers` appends
    MatMul-by-identity + Relu pairs: the outputs stay the same (Relu of a Relu output is a no-op) but
    each costs a real layer's time, and ONNX Runtime's graph optimizer does not remove them.
    `features` declares the input's second dim otherwise (a name makes it dynamic)."""
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for _ in range(depth)]
    weights += [np.eye(width, dtype=np.float32)] * noop_layers
    nodes, inits, prev = [], [], input_name
    for i, weight in enumerate(weights):
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        out = "output" if i == len(weights) - 1 else f"h{i}"
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]), helper.make_node("Relu", [f"mm{i}"], [out])]
        prev = out
    graph = helper.make_graph(nodes, "checkpoint-mlp",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                             ["batch", width if features is None else features])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
