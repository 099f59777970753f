"""P4: what int8-static buys on mobilenet-v2 with ONNX Runtime on this CPU, against fp32 from the same run.

Both variants are measured by a real local agent (the embedded one the controller starts), one
thread, batch 1, in interleaved ABBA rounds so drift on the machine hits both alike. Size is
the artifact's bytes; the accuracy drop is in percentage points of top-1 on the held-out digits.
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.figures import Figure
from benchmarks.harness_overhead import THREADS, agent_median_ms, interleaved, local_client
from compressors.models import get_model
from compressors.recipes import Variant, compress

MODEL = "mobilenet-v2"


def compression_figures(cache_dir: Path) -> list[Figure]:
    """P4-speedup, P4-size and P4-acc-drop: int8-static against fp32, both made and measured now."""
    bundle = get_model(MODEL, cache_dir)
    fp32, int8 = compress(bundle, "fp32", cache_dir), compress(bundle, "int8-static", cache_dir)
    fp32_ms, int8_ms = _agent_medians(fp32, int8)
    return [
        Figure("P4-speedup", f"int8-static speed-up, {MODEL} (ONNX Runtime)", fp32_ms / int8_ms, "x",
               f"agent p50 fp32 {fp32_ms:.4f} ms / int8 {int8_ms:.4f} ms, {THREADS} thread, batch 1", ">= 2"),
        Figure("P4-size", f"int8-static size, {MODEL}", int8.size_bytes / fp32.size_bytes, "ratio",
               f"{int8.size_bytes} / {fp32.size_bytes} bytes", "<= 0.27"),
        Figure("P4-acc-drop", f"int8-static top-1 drop, {MODEL}", _drop_points(fp32, int8), "points",
               f"top-1 fp32 {fp32.accuracy:.4f}, int8 {int8.accuracy:.4f} on {MODEL}'s eval split", "<= 1"),
    ]


def _agent_medians(fp32: Variant, int8: Variant) -> tuple[float, float]:
    """Median over the rounds of each variant's agent-reported p50 latency, in ms."""
    with tempfile.TemporaryDirectory() as agent_cache, local_client(Path(agent_cache)) as client:
        for variant in (fp32, int8):
            client.ensure_uploaded(variant.path, variant.sha256)
        fp32_rounds, int8_rounds = interleaved(lambda: agent_median_ms(client, fp32.sha256),
                                               lambda: agent_median_ms(client, int8.sha256))
    return statistics.median(fp32_rounds), statistics.median(int8_rounds)


def _drop_points(fp32: Variant, int8: Variant) -> float:
    if fp32.accuracy is None or int8.accuracy is None:
        raise ValueError(f"{MODEL} has no evaluation data, so no accuracy drop can be measured")
    return (fp32.accuracy - int8.accuracy) * 100
