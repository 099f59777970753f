"""Write tiny real .tflite test models with TensorFlow's own converter.

Runs only inside the TensorFlow virtual environment that the tests create
(`.venv-tflite/`): TensorFlow pins versions that clash with the main venv.

    .venv-tflite/bin/python tests/tflite_models/make_models.py OUT_DIR

Writes into OUT_DIR:
  float32.tflite  float32 in, float32 out, dynamic batch ([-1, 8, 8, 3] -> [-1, 4])
  int8.tflite     the same weights, full-integer INT8: int8 in, int8 out
  uint8.tflite    the same weights, full-integer with uint8 in and out (the older Edge TPU style)
  conv96.tflite   a ~1 ms float32 CNN on a 96x96 image, for the harness-overhead benchmark
  dynamic_hw.tflite  a float32 conv classifier with dynamic height and width: signature input
                  `image` [1, None, None, 3] (tensor shape [1, 1, 1, 3]) -> [1, 4]
  sample_input.npy, reference_output.npy  one batch and TensorFlow's own float output for it
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

INPUT_SHAPE = (8, 8, 3)         # height, width, channels
CHANNELS = 8
CLASSES = 4
SEED = 20240601


class TinyConvNet(tf.Module):
    """conv 3x3 -> relu -> global average pool -> dense: small, but the ops real vision models use."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.kernel = tf.constant(rng.normal(0, 0.3, (3, 3, INPUT_SHAPE[2], CHANNELS)), tf.float32)
        self.conv_bias = tf.constant(rng.normal(0, 0.1, CHANNELS), tf.float32)
        self.weights = tf.constant(rng.normal(0, 0.5, (CHANNELS, CLASSES)), tf.float32)
        self.bias = tf.constant(rng.normal(0, 0.1, CLASSES), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name="image")])
    def __call__(self, image: tf.Tensor) -> tf.Tensor:
        features = tf.nn.relu(tf.nn.conv2d(image, self.kernel, 1, "SAME") + self.conv_bias)
        pooled = tf.reduce_mean(features, axis=[1, 2])
        return tf.matmul(pooled, self.weights) + self.bias


class BenchConvNet(tf.Module):
    """A 96x96 three-stage strided CNN (MLPerf Tiny's visual-wake-words input size): about a
    millisecond on one core, so harness overhead is measured on a realistic model (bench P1)."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        widths = (3, 16, 32, 64)
        self.kernels = [tf.constant(rng.normal(0, 0.2, (3, 3, a, b)), tf.float32)
                        for a, b in zip(widths[:-1], widths[1:], strict=True)]
        self.weights = tf.constant(rng.normal(0, 0.2, (widths[-1], CLASSES)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 96, 96, 3], tf.float32, name="image")])
    def __call__(self, image: tf.Tensor) -> tf.Tensor:
        x = image
        for kernel in self.kernels:
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, 2, "SAME"))
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.weights)


class DynamicHwNet(tf.Module):
    """A two-conv classifier that takes any image height and width, as many published vision
    models declare it: the .tflite alone does not say what size to feed (its tensor shape is
    [1, 1, 1, 3], its shape signature [1, -1, -1, 3])."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        widths = (INPUT_SHAPE[2], 8, 16)
        self.kernels = [tf.constant(rng.normal(0, 0.3, (3, 3, a, b)), tf.float32)
                        for a, b in zip(widths[:-1], widths[1:], strict=True)]
        self.weights = tf.constant(rng.normal(0, 0.3, (widths[-1], CLASSES)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, INPUT_SHAPE[2]], tf.float32, name="image")])
    def __call__(self, image: tf.Tensor) -> tf.Tensor:
        x = image
        for kernel in self.kernels:
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, 2, "SAME"))
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.weights)


def sample_batches(count: int, seed: int) -> list[np.ndarray]:
    """Inputs in [-1, 1): what the representative dataset and the tests both feed."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, *INPUT_SHAPE)).astype(np.float32) for _ in range(count)]


def convert(model: tf.Module, io_type: tf.DType | None) -> bytes:
    """float32 when io_type is None, else full-integer with io_type inputs and outputs."""
    concrete = model.__call__.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    if io_type is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([batch] for batch in sample_batches(200, SEED + 1))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter.convert()


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model = TinyConvNet(np.random.default_rng(SEED))
    for name, io_type in (("float32", None), ("int8", tf.int8), ("uint8", tf.uint8)):
        (out_dir / f"{name}.tflite").write_bytes(convert(model, io_type))
    (out_dir / "conv96.tflite").write_bytes(convert(BenchConvNet(np.random.default_rng(SEED)), None))
    (out_dir / "dynamic_hw.tflite").write_bytes(convert(DynamicHwNet(np.random.default_rng(SEED)), None))
    sample = np.concatenate(sample_batches(4, SEED + 2))
    np.save(out_dir / "sample_input.npy", sample)
    np.save(out_dir / "reference_output.npy", model(sample).numpy())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
