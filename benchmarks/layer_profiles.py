"""L1: per-layer profiles on mobilenet-v2, the registry's microcontroller-class MobileNetV2 (1x1x96x96
input, width 0.5: about 5 M MACs, 33 ONNX Runtime kernels, ~0.15 ms on an x86 core), on real local agents.

L1-coverage-onnxruntime: Σ per-layer median ÷ the headline p50 of the same fp32 result, measured as
  `edgefarm run --local --profile` measures it (ONNX Runtime's default thread pool). The reference also
  gives Σ ÷ the profiled pass's own run median and how much slower the profiled runs were (docs/profiling.md
  says why the first ratio is above 1 on a model this small).
L1-coverage-onnxruntime-w1: the same on mobilenet-v2-w1 (the paper's width 1.0, 54 M MACs, ~1.5 ms), where
  the profiler's fixed cost per kernel is small against the kernels: context for the figure above, not
  a replacement of it.
L1-headline: the headline p50 of a job with the profiling pass ÷ one without, ABBA over the rounds.
L1-align: the share of fp32 compute layers aligned in the fp32 ↔ int8-static diff of that same run.
"""
from __future__ import annotations

import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks.figures import Figure
from benchmarks.harness_overhead import MEASURE_S, THREADS, WARMUP_S, interleaved, local_client
from edgefarm.agent.digest import sha256_file
from edgefarm.api import Farm, Measure
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.records import BenchmarkResult, JobSpec, LayerProfile

MODEL = "mobilenet-v2"
MODEL_NOTE = "mobilenet-v2 (1x1x96x96, width 0.5, ~5 M MACs)"
FULL_MODEL = "mobilenet-v2-w1"   # trained by P4 earlier in a full run; about 3.5 min on one core otherwise
FULL_NOTE = "mobilenet-v2-w1 (1x1x96x96, width 1.0, ~54 M MACs)"
# More rounds than P1's 4: the two sides are the same measurement, so the figure is all noise but for a
# real effect of the pass; on a shared 2-core box 4 rounds left it ±3 %.
HEADLINE_ROUNDS = 8


def layer_figures(cache: Path) -> list[Figure]:
    farm = Farm.local(db=cache / "l1.sqlite", cache_dir=cache)
    run_id, fp32 = _profiled_fp32(farm, MODEL, ["fp32", "int8-static"])
    diff = farm.diff(f"{run_id}:fp32", f"{run_id}:int8-static")
    headline, one_thread = headline_figure(_fp32_path(cache, MODEL))
    _, full = _profiled_fp32(farm, FULL_MODEL, ["fp32"])
    full_one_thread = one_thread_profile(_fp32_path(cache, FULL_MODEL))
    return [coverage_figure("L1-coverage-onnxruntime", MODEL, fp32, MODEL_NOTE, one_thread),
            coverage_figure("L1-coverage-onnxruntime-w1", FULL_MODEL, full, FULL_NOTE, full_one_thread), headline,
            Figure("L1-align", f"fp32 compute layers aligned, fp32 ↔ int8-static, {MODEL}", diff.aligned_share,
                   "share", f"{diff.layers.aligned_compute_a} of {diff.layers.compute_layers_a} non-glue layers of "
                   f"fp32 in an aligned group, same run, {MODEL_NOTE}", ">= 0.9")]


def _profiled_fp32(farm: Farm, model: str, recipes: list[str]) -> tuple[str, BenchmarkResult]:
    """A run as `edgefarm run MODEL --local --profile` makes it; its id and its fp32 result."""
    run = farm.run(model, recipes=recipes, progress=False,
                   measure=Measure(warmup_seconds=WARMUP_S, min_seconds=MEASURE_S, profile=True))
    return run.id, next(r.result for r in run.results if r.variant == "fp32")


def _fp32_path(cache: Path, model: str) -> Path:
    from edgefarm.compressors.models import get_model
    from edgefarm.compressors.recipes import compress

    return compress(get_model(model, cache), "fp32", cache).path


def layer_sum_us(profile: LayerProfile) -> float:
    return sum(row.median_us for row in profile.layers)


def _profile(result: BenchmarkResult) -> LayerProfile:
    profile = result.layer_profile
    if profile is None or not profile.available:
        raise RuntimeError(f"the agent returned no layer profile: {profile}")
    return profile


def coverage_figure(figure_id: str, model: str, result: BenchmarkResult, model_note: str,
                    one_thread: BenchmarkResult | None = None) -> Figure:
    profile = _profile(result)
    total, headline_us = layer_sum_us(profile), result.latency.p50_ms * 1000
    note = (f"Σ {len(profile.layers)} layer medians {total:.0f} µs / headline p50 {headline_us:.0f} µs, default "
            f"threads; the profiled pass's runs took {profile.profiled_median_us:.0f} µs "
            f"({profile.profiled_median_us / headline_us:.2f}x the headline), Σ / that = "
            f"{total / profile.profiled_median_us:.2f}")
    if one_thread is not None:
        single = _profile(one_thread)
        note += f"; at 1 thread Σ / p50 = {layer_sum_us(single) / (one_thread.latency.p50_ms * 1000):.2f}"
    return Figure(figure_id, f"Σ layer medians / headline p50, {model} fp32", total / headline_us, "x",
                  f"{note}; {model_note}", "0.8-1.1")


def headline_figure(path: Path) -> tuple[Figure, BenchmarkResult]:
    """ABBA rounds of the same job without and with the profiling pass; also the last profiled result."""
    profiled: list[BenchmarkResult] = []
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        plain, with_profile = interleaved(lambda: _job(client, sha, False).latency.p50_ms,
                                          lambda: _p50(_job(client, sha, True), profiled), HEADLINE_ROUNDS)
    a, b = statistics.median(plain), statistics.median(with_profile)
    ratios = sorted(y / x for x, y in zip(plain, with_profile, strict=True))
    return Figure("L1-headline", f"headline p50 with --profile / without, {MODEL} fp32", b / a, "x",
                  f"p50 {b:.4f} ms with the profiling pass / {a:.4f} ms without, medians of {len(plain)} "
                  f"interleaved jobs each (per-round ratios {ratios[0]:.3f}..{ratios[-1]:.3f}), {THREADS} thread, "
                  f"{MODEL_NOTE}", "<= 1.02"), profiled[-1]


def one_thread_profile(path: Path) -> BenchmarkResult:
    """One profiled job at one intra-op thread, on a local agent of its own."""
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        return _job(client, sha, True)


def _p50(result: BenchmarkResult, into: list[BenchmarkResult]) -> float:
    into.append(result)
    return result.latency.p50_ms


def _job(client: AgentClient, sha: str, profile: bool) -> BenchmarkResult:
    spec = JobSpec(job_id="", artifact_sha256=sha, backend="onnxruntime", threads=THREADS, batch_size=1,
                   warmup_iterations=10, warmup_seconds=WARMUP_S, min_iterations=10, min_seconds=MEASURE_S)
    final = list(client.benchmark(replace(spec, profile=profile)))[-1]
    if not isinstance(final, BenchmarkResult):
        raise RuntimeError(f"agent failed: {final.message}")
    return final
