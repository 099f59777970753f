"""digits-cnn: a small CNN trained at first use on scikit-learn's bundled 8x8 digits.

It needs no download, trains in seconds on a laptop CPU and is large enough
(~124k parameters) that the weights dominate the ONNX file, so quantization
shows its real size effect. Everything is seeded: the same inputs give the
same weights on the same machine.
"""
from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from compressors.cache import staged_directory
from compressors.models.bundle import ModelBundle
from compressors.progress import ProgressFn, report

NAME = "digits-cnn"
SEED = 0
EVAL_COUNT = 360  # 20 % of the 1,797 digits, held out from training
CALIB_COUNT = 200
EPOCHS = 10
BATCH_SIZE = 64
PEAK_LEARNING_RATE = 5e-3  # one-cycle schedule: reaches >= 98 % for every seed tried, not just a lucky one
OPSET = 17


def build(cache_dir: Path, progress: ProgressFn | None = None) -> ModelBundle:
    """Return the cached model, training and exporting it first if it is not cached yet."""
    model_dir = cache_dir / "models" / NAME
    if not (model_dir / "model.onnx").is_file():
        with staged_directory(model_dir) as staging:
            _train_and_export(staging, progress)
    return ModelBundle(
        NAME, model_dir / "model.onnx", model_dir / "calib.npz", model_dir / "eval.npz", metric="top1"
    )


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_eval, y_eval): x is [N,1,8,8] float32 in 0..1, y int64 labels."""
    from sklearn.datasets import load_digits  # only needed when (re)training

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(y))
    eval_rows, train_rows = order[:EVAL_COUNT], order[EVAL_COUNT:]
    return x[train_rows], y[train_rows], x[eval_rows], y[eval_rows]


def _train_and_export(out_dir: Path, progress: ProgressFn | None) -> None:
    x_train, y_train, x_eval, y_eval = load_split()
    # torch is imported here only, so using a cached model never pays its import time.
    import torch

    with _deterministic_torch(torch):
        started = time.perf_counter()
        net = _train(torch, x_train, y_train, progress)
        train_seconds = time.perf_counter() - started
        report(progress, "export digits-cnn", 0.0)
        _export_onnx(torch, net, out_dir / "model.onnx")
        accuracy = _torch_accuracy(torch, net, x_eval, y_eval)
    np.savez(out_dir / "calib.npz", x=x_train[:CALIB_COUNT], y=y_train[:CALIB_COUNT])
    np.savez(out_dir / "eval.npz", x=x_eval, y=y_eval)
    _write_training_record(out_dir, net, train_seconds, accuracy, torch.__version__)
    report(progress, "export digits-cnn", 1.0)


@contextlib.contextmanager
def _deterministic_torch(torch: Any) -> Iterator[None]:
    """Seed torch and force deterministic kernels, restoring the caller's settings afterwards.

    The controller is a long-lived process: training must not leave its global
    RNG, determinism flag or thread count changed.
    """
    was_deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        torch.use_deterministic_algorithms(True)
        # One thread: the model is too small to gain from more, the weights then do not depend on
        # the core count, and on a busy 2-core machine two threads made training several times slower.
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(was_deterministic)


def _network(torch: Any) -> Any:
    nn = torch.nn
    return nn.Sequential(
        # Pooling right after the first conv keeps the wide convs on 4x4 maps: training takes seconds.
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4 -> 2x2
        nn.Flatten(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10),
    )


def _train(torch: Any, x_train: np.ndarray, y_train: np.ndarray, progress: ProgressFn | None) -> Any:
    net = _network(torch)
    optimizer = torch.optim.Adam(net.parameters(), lr=PEAK_LEARNING_RATE)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    steps_per_epoch = -(-len(y) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=PEAK_LEARNING_RATE, total_steps=EPOCHS * steps_per_epoch
    )
    net.train()
    for epoch in range(EPOCHS):
        for rows in torch.randperm(len(y)).split(BATCH_SIZE):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
            optimizer.step()
            schedule.step()
        report(progress, "train digits-cnn", (epoch + 1) / EPOCHS)
    return net.eval()


def _torch_accuracy(torch: Any, net: Any, x_eval: np.ndarray, y_eval: np.ndarray) -> float:
    with torch.no_grad():
        predicted = net(torch.from_numpy(x_eval)).argmax(dim=1).numpy()
    return float((predicted == y_eval).mean())


def _export_onnx(torch: Any, net: Any, path: Path) -> None:
    example = torch.zeros(1, 1, 8, 8)
    # The legacy TorchScript exporter, on purpose: the dynamo one needs onnxscript, which the
    # controller does not ship. Its deprecation notice (torch >= 2.9) is not news to our users.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                DeprecationWarning)
        torch.onnx.export(
            net, (example,), str(path), input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )


def _write_training_record(
    out_dir: Path, net: Any, train_seconds: float, accuracy: float, version: str
) -> None:
    record = {
        "model": NAME, "seed": SEED, "epochs": EPOCHS, "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(train_seconds, 3), "eval_top1_torch": accuracy, "torch_version": version,
    }
    (out_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
