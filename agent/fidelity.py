"""How close a model's outputs stay to the fp32 model's: cosine, SNR, max error, top-k agreement.

The same numbers are computed on the controller (the variant run with ONNX Runtime on the host)
and on the board (the engine the board built), so a delegate or execution provider that computes
wrong results on the board shows as device fidelity below host fidelity. numpy only: this module
runs on the boards' Pythons too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class OutputFidelity:
    name: str
    cosine: float               # mean over samples of the cosine similarity (1 = same direction)
    snr_db: float               # 10 log10(signal power / error power); inf when identical
    max_abs_error: float
    classifier: bool            # a [batch, classes] output: the agreements are meaningful
    top1_agreement: float       # nan unless classifier
    top5_agreement: float       # nan unless classifier with at least 5 classes
    samples: int


def compare_outputs(name: str, outputs: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> OutputFidelity:
    """Fidelity of one output over samples; outputs[k] and references[k] come from the same feed."""
    if len(outputs) != len(references) or not outputs:
        raise ValueError(f"output {name!r}: {len(outputs)} outputs for {len(references)} references")
    for out, ref in zip(outputs, references):
        if out.shape != ref.shape:
            raise ValueError(f"output {name!r} has shape {list(out.shape)}, the reference {list(ref.shape)}")
    got = [np.asarray(o, dtype=np.float64).ravel() for o in outputs]
    want = [np.asarray(r, dtype=np.float64).ravel() for r in references]
    classifier = _is_classifier(references[0])
    return OutputFidelity(
        name=name, cosine=float(np.mean([_cosine(g, w) for g, w in zip(got, want)])),
        snr_db=_snr_db(np.concatenate(got), np.concatenate(want)),
        max_abs_error=float(max(np.max(np.abs(g - w)) if g.size else 0.0 for g, w in zip(got, want))),
        classifier=classifier,
        top1_agreement=_topk_agreement(outputs, references, 1) if classifier else math.nan,
        top5_agreement=_topk_agreement(outputs, references, 5) if classifier and references[0].shape[-1] >= 5
        else math.nan,
        samples=len(outputs))


def worst(fidelities: Sequence[OutputFidelity]) -> OutputFidelity | None:
    """The output that strayed furthest (lowest cosine): what a one-number summary must show."""
    return min(fidelities, key=lambda f: (f.cosine, f.snr_db)) if fidelities else None


def _is_classifier(reference: np.ndarray) -> bool:
    return reference.ndim == 2 and reference.shape[-1] >= 2 and reference.dtype.kind == "f"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:  # two all-zero outputs agree; one all-zero output does not
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norms)


def _snr_db(got: np.ndarray, want: np.ndarray) -> float:
    noise = float(np.sum((got - want) ** 2))
    signal = float(np.sum(want ** 2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0.0 else -math.inf


def top1_hits(scores: np.ndarray, labels: np.ndarray) -> int:
    """Rows whose highest score is at the label: the one top-1 rule for on-device accuracy, the
    compressors' host accuracy and fidelity's agreement."""
    return int((np.asarray(scores).argmax(axis=-1) == np.asarray(labels)).sum())


def _topk_agreement(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray], k: int) -> float:
    out_rows = np.concatenate([np.asarray(o) for o in outputs])
    ref_top1 = np.concatenate([np.asarray(r) for r in references]).argmax(axis=-1)
    if k == 1:
        return top1_hits(out_rows, ref_top1) / len(ref_top1)
    top_k = np.argsort(-out_rows, axis=-1, kind="stable")[:, :k]
    return float(np.mean([label in row for label, row in zip(ref_top1, top_k)]))


def compare_all(names: Sequence[str], outputs: Sequence[Sequence[np.ndarray]],
                references: Sequence[Sequence[np.ndarray]]) -> list[OutputFidelity]:
    """outputs[k][i]: output i of feed k. One OutputFidelity per output."""
    return [compare_outputs(name, [o[i] for o in outputs], [r[i] for r in references])
            for i, name in enumerate(names)]
