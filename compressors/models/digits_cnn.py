"""digits-cnn: a small CNN trained at first use on scikit-learn's bundled 8x8 digits.

It needs no download, trains in seconds on a laptop CPU and is large enough
(~124k parameters) that the weights dominate the ONNX file, so quantization
shows its real size effect. Everything is seeded: the same inputs give the
same weights on the same machine. Its weights (state_dict.pt) and training split
(train.npz) are kept beside the ONNX file, so the torch steps (pruning, fine-tuning,
distillation, QAT) can start from the PyTorch model; the network itself is defined
in torch_builders.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefarm.compressors.cache import is_current_model, staged_directory
from edgefarm.compressors.models.bundle import ModelBundle, TorchSource
from edgefarm.compressors.progress import ProgressFn, report

# Shared with the torch steps; tests/test_models.py checks it under this name.
from edgefarm.compressors.torch_steps.training import deterministic_torch as _deterministic_torch

NAME = "digits-cnn"
SEED = 0
EVAL_COUNT = 360  # 20 % of the 1,797 digits, held out from training
CALIB_COUNT = 200
EPOCHS = 10
BATCH_SIZE = 64
PEAK_LEARNING_RATE = 5e-3  # one-cycle schedule: reaches >= 98 % for every seed tried, not just a lucky one
INPUT_SHAPE = (1, 1, 8, 8)
# Bump when the files or the training change, so an older cache entry is rebuilt.
# 2: state_dict.pt and train.npz for the torch steps.
CACHE_FORMAT = 2
FILES = ("model.onnx", "calib.npz", "eval.npz", "train.npz", "state_dict.pt", "training.json")


def build(cache_dir: Path, progress: ProgressFn | None = None) -> ModelBundle:
    """Return the cached model, training and exporting it first if it is not cached yet."""
    model_dir = cache_dir / "models" / NAME
    if not is_current_model(model_dir, CACHE_FORMAT, FILES):
        shutil.rmtree(model_dir, ignore_errors=True)  # an older format, or damaged
        with staged_directory(model_dir) as staging:
            _train_and_export(staging, progress)
    source = TorchSource(NAME, model_dir / "state_dict.pt", model_dir / "train.npz", INPUT_SHAPE)
    return ModelBundle(
        NAME, model_dir / "model.onnx", model_dir / "calib.npz", model_dir / "eval.npz", metric="top1",
        torch_source=source,
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

    from edgefarm.compressors.torch_steps.export import export_onnx

    with _deterministic_torch(torch):
        started = time.perf_counter()
        net = _train(torch, x_train, y_train, progress)
        train_seconds = time.perf_counter() - started
        report(progress, "export digits-cnn", 0.0)
        export_onnx(net, INPUT_SHAPE, out_dir / "model.onnx")
        torch.save(net.state_dict(), out_dir / "state_dict.pt")
        accuracy = _torch_accuracy(torch, net, x_eval, y_eval)
    np.savez(out_dir / "calib.npz", x=x_train[:CALIB_COUNT], y=y_train[:CALIB_COUNT])
    np.savez(out_dir / "eval.npz", x=x_eval, y=y_eval)
    np.savez(out_dir / "train.npz", x=x_train, y=y_train)
    _write_training_record(out_dir, net, train_seconds, accuracy, torch.__version__)
    report(progress, "export digits-cnn", 1.0)


def _train(torch: Any, x_train: np.ndarray, y_train: np.ndarray, progress: ProgressFn | None) -> Any:
    from edgefarm.compressors.models.torch_builders import digits_cnn

    net = digits_cnn()
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


def _write_training_record(
    out_dir: Path, net: Any, train_seconds: float, accuracy: float, version: str
) -> None:
    record = {
        "model": NAME, "cache_format": CACHE_FORMAT, "seed": SEED, "epochs": EPOCHS,
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(train_seconds, 3), "eval_top1_torch": accuracy, "torch_version": version,
    }
    (out_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
