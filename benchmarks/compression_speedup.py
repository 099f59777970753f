"""P4: what int8 buys against fp32 from the same run, on this CPU.

P4-speedup/size/acc-drop: int8-static on the microcontroller-class mobilenet-v2 (kept, goals unchanged,
so the record stays honest). P4-w1-*: the fastest int8 route on mobilenet-v2-w1 (the paper's network,
about 2 ms) against the fastest fp32 route; the routes are ONNX Runtime, LiteRT, ExecuTorch (et-fp32,
et-int8) and OpenVINO (the fp32 ONNX on OpenVINO, ov-int8). P4-qat-*, P4-prune-*: those recipes on mobilenet-v2.

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
from edgefarm.compressors.errors import CompressorError
from edgefarm.compressors.models import get_model
from edgefarm.compressors.recipes import Variant, compress

MODEL = "mobilenet-v2"
FULL_MODEL = "mobilenet-v2-w1"


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


def _agent_medians(a: Variant, b: Variant, b_backend: str = "") -> tuple[float, float]:
    """Median over the rounds of each variant's agent-reported p50 latency, in ms (b on b_backend if given)."""
    with tempfile.TemporaryDirectory() as agent_cache, local_client(Path(agent_cache)) as client:
        for variant in (a, b):
            client.ensure_uploaded(variant.path, variant.sha256)
        a_rounds, b_rounds = interleaved(lambda: agent_median_ms(client, a.sha256, _backend(a)),
                                         lambda: agent_median_ms(client, b.sha256, b_backend or _backend(b)))
    return statistics.median(a_rounds), statistics.median(b_rounds)


def _backend(variant: Variant) -> str:
    return {".tflite": "litert", ".pte": "executorch", ".ovir": "openvino"}.get(variant.path.suffix, "onnxruntime")


def _drop_points(fp32: Variant, int8: Variant) -> float:
    if fp32.accuracy is None or int8.accuracy is None:
        raise ValueError(f"{fp32.model} has no evaluation data, so no accuracy drop can be measured")
    return (fp32.accuracy - int8.accuracy) * 100


def full_model_figures(cache_dir: Path) -> list[Figure]:
    """P4-w1-*: the fastest int8 route on mobilenet-v2-w1 against the fastest fp32 route, made and measured now."""
    bundle = get_model(FULL_MODEL, cache_dir)
    fp32, static = compress(bundle, "fp32", cache_dir), compress(bundle, "int8-static", cache_dir)
    missing: list[str] = []
    fp32_routes = [("fp32", fp32, "onnxruntime"), *_routes(bundle, cache_dir, (("et-fp32", "executorch"),), missing)]
    if _has_openvino():
        fp32_routes.append(("fp32 on openvino", fp32, "openvino"))
    int8_routes = [("int8-static", static, "onnxruntime"), *_routes(
        bundle, cache_dir, (("tflite-int8", "litert"), ("et-int8", "executorch"), ("ov-int8", "openvino")), missing)]
    # each route interleaved with the ONNX Runtime fp32 reference, so drift hits both alike
    timed = {label: _agent_medians(fp32, v, backend)[1] for label, v, backend in fp32_routes + int8_routes}
    fp32_best = min((label for label, _, _ in fp32_routes), key=timed.__getitem__)
    best = min((label for label, _, _ in int8_routes), key=timed.__getitem__)
    detail = ", ".join(f"{label} {ms:.3f} ms" for label, ms in timed.items())
    absent = f"; not available: {'; '.join(missing)}" if missing else ""
    return [
        Figure("P4-w1-speedup", f"fastest int8 route ÷ fastest fp32 route, {FULL_MODEL}",
               timed[fp32_best] / timed[best], "x",
               f"{fp32_best} {timed[fp32_best]:.3f} ms / {best} {timed[best]:.3f} ms; {detail}; "
               f"{THREADS} thread, batch 1{absent}", ">= 1.8"),
        Figure("P4-w1-size", f"int8-static size, {FULL_MODEL}", static.size_bytes / fp32.size_bytes, "ratio",
               f"{static.size_bytes} / {fp32.size_bytes} bytes", "<= 0.27"),
        Figure("P4-w1-acc-drop", f"int8-static top-1 drop, {FULL_MODEL}", _drop_points(fp32, static), "points",
               f"top-1 fp32 {fp32.accuracy:.4f}, int8 {static.accuracy:.4f}", "<= 1"),
    ]


def _routes(bundle, cache_dir: Path, wanted: tuple[tuple[str, str], ...],
            missing: list[str]) -> list[tuple[str, Variant, str]]:
    """The routes whose converter works here; each one that does not is named in `missing`, with why."""
    made = []
    for recipe, backend in wanted:
        try:
            made.append((recipe, compress(bundle, recipe, cache_dir), backend))
        except (CompressorError, ImportError) as exc:  # a converter environment or runtime is not installed
            missing.append(f"{recipe}: {exc}")
    return made


def _has_openvino() -> bool:
    from edgefarm.agent.backends import openvino

    return openvino.version() is not None


def recipe_figures(cache_dir: Path) -> list[Figure]:
    """P4-qat-* and P4-prune-acc-drop on mobilenet-v2: QAT and a pruning chain that must keep accuracy."""
    bundle = get_model(MODEL, cache_dir)
    fp32, static = compress(bundle, "fp32", cache_dir), compress(bundle, "int8-static", cache_dir)
    qat, pruned = compress(bundle, "qat-int8", cache_dir), compress(bundle, "prune50-ft-int8", cache_dir)
    qat_ms, static_ms = _agent_medians(qat, static)
    return [
        Figure("P4-qat-acc-drop", f"qat-int8 top-1 drop, {MODEL}", _drop_points(fp32, qat), "points",
               f"top-1 fp32 {fp32.accuracy:.4f}, qat-int8 {qat.accuracy:.4f}", "<= 1"),
        Figure("P4-qat-vs-ptq", f"qat-int8 p50 ÷ int8-static p50, {MODEL}", qat_ms / static_ms, "x",
               f"agent p50 qat-int8 {qat_ms:.4f} ms / int8-static {static_ms:.4f} ms, {THREADS} thread", "<= 1.05"),
        Figure("P4-prune-acc-drop", f"prune50-ft-int8 top-1 drop, {MODEL}", _drop_points(fp32, pruned), "points",
               f"top-1 fp32 {fp32.accuracy:.4f}, prune50-ft-int8 {pruned.accuracy:.4f}", "<= 1.5"),
    ]
