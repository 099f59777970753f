"""Stored results with layer profiles, written as the agent's ONNX Runtime and LiteRT passes write them,
for the report and diff tests that must not wait for a real profiling pass (test_layer_diff has one)."""
from __future__ import annotations

import hashlib
from dataclasses import replace

from edgefarm.controller.agents.records import BenchmarkResult, LatencyStats, LayerProfile, LayerRow
from edgefarm.controller.results.store import JobRecord, ResultStore, VariantRecord
from tests.test_results_store import RESULT

CPU = "CPUExecutionProvider"
CONVS = 12
CONV_US = 10.0                          # each fp32 conv's median; the int8 one is 8 µs
HEADLINE_MS = {"fp32": 0.100, "int8-static": 0.120, "as-is": 0.500, "fp16": 0.090}


def _conv(i: int, op_type: str, precision: str, median_us: float) -> LayerRow:
    return LayerRow(f"/{i}/Conv_token_{i}" if op_type != "Conv" else f"/{i}/Clip_output_0_nchwc", op_type, "Conv",
                    CPU, precision, False, 1, True, median_us, median_us * 1.2, (f"1x16x{48 - i}x{48 - i}",),
                    (f"/{i}/Conv",))


def fp32_profile() -> LayerProfile:
    """12 convs of 10 µs, a 6 µs Gemm, a 4 µs reorder (glue): Σ 130 µs; its profiled runs took 200 µs."""
    rows = [_conv(i, "Conv", "fp32", CONV_US) for i in range(CONVS)]
    rows += [LayerRow("ReorderOutput_token_99", "ReorderOutput", "Reorder", CPU, "fp32", True, 1, True, 4.0, 5.0,
                      ("1x16x36x36",), ("/11/Conv",)),
             LayerRow("/18/Gemm", "Gemm", "MatMul", CPU, "fp32", False, 1, True, 6.0, 7.0, ("1x10",), ("/18/Gemm",))]
    return LayerProfile(True, "", "onnxruntime enable_profiling (onnxruntime 1.32.0)", 100, 5, tuple(rows),
                        placement_source="each kernel event's provider", profiled_median_us=200.0)


def int8_profile() -> LayerProfile:
    """Quantize in, 12 QLinearConvs of 8 µs, a Gemm, dequantize out: Σ 122 µs."""
    rows = [LayerRow("input_QuantizeLinear", "QuantizeLinear", "Quantize", CPU, "uint8", True, 1, True, 10.0, 11.0,
                     ("1x1x96x96",), ("input_QuantizeLinear",))]
    rows += [_conv(i, "QLinearConv", "uint8", 8.0) for i in range(CONVS)]
    rows += [LayerRow("/18/Gemm", "Gemm", "MatMul", "XnnpackExecutionProvider", "fp32", False, 1, True, 10.0, 12.0,
                      ("1x10",), ("/18/Gemm",)),
             LayerRow("logits_DequantizeLinear", "DequantizeLinear", "Dequantize", CPU, "fp32", True, 1, True, 6.0,
                      7.0, ("1x10",), ("logits_DequantizeLinear",))]
    return LayerProfile(True, "", "onnxruntime enable_profiling (onnxruntime 1.32.0)", 100, 5, tuple(rows),
                        placement_source="each kernel event's provider", profiled_median_us=180.0)


def placement_only_profile() -> LayerProfile:
    """What LiteRT gives from Python: which delegate took each node, no time."""
    rows = tuple(LayerRow(f"CONV_2D:{i}", "CONV_2D", "Conv", "XNNPACK" if i else "CPU", "fp32", False, 1, False)
                 for i in range(3))
    return LayerProfile(True, "", "litert placement", 0, 0, rows, "not available: no benchmark_model on this board",
                        "_get_ops_details() DELEGATE nodes")


def _result(job_id: str, variant: str, profile: LayerProfile | None) -> BenchmarkResult:
    p50 = HEADLINE_MS[variant]
    latency = LatencyStats(1000, p50 * 0.9, p50 * 2, p50, p50 * 0.05, p50, p50 * 1.1, p50 * 1.2, p50 * 1.4, 0.05)
    return replace(RESULT, job_id=job_id, latency=latency, layer_profile=profile,
                   backend="litert" if variant == "as-is" else "onnxruntime",
                   environment=replace(RESULT.environment, throttled=False))


def store_profiled_run(store: ResultStore) -> str:
    """fp32 and int8-static with ONNX Runtime profiles, a .tflite with placement only, fp16 without a
    profile; returns the run id."""
    return store_run(store, {"fp32": fp32_profile(), "int8-static": int8_profile(),
                             "as-is": placement_only_profile(), "fp16": None})


def store_run(store: ResultStore, profiles: dict[str, LayerProfile | None]) -> str:
    """One result of mobilenet-v2 on x86-01 per variant, with the given profile (None: measured without)."""
    run_id = store.new_run("run mobilenet-v2")
    for variant, profile in profiles.items():
        sha = hashlib.sha256(variant.encode()).hexdigest()
        store.add_variant(run_id, VariantRecord("mobilenet-v2", variant, {}, sha, 500_000, 0.96, 1.0))
        backend = "litert" if variant == "as-is" else "onnxruntime"
        job = JobRecord(f"{run_id}-{variant}", run_id, "mobilenet-v2", variant, "x86-01", backend, sha)
        store.add_job(job)
        store.add_result(job, _result(job.id, variant, profile))
    return run_id
