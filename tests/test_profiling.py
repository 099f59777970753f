"""The agent's profiling pass, per runtime: ONNX Runtime on real mobilenet-v2 variants, LiteRT placement
on a real .tflite, TensorRT's parsing against JSON in NVIDIA's documented format, and the failures a
board can hit (a malformed profile file is an infrastructure failure naming the file)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefarm.agent.backends import get_backend
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.job import Job
from edgefarm.agent.profiling import PROFILERS, ProfileFormatError, ProfileSettings, run_profile
from edgefarm.agent.profiling import litert as litert_profiler
from edgefarm.agent.profiling import tensorrt as trt_profiler
from edgefarm.agent.profiling.families import is_glue, op_family
from edgefarm.agent.profiling.ort_events import load_events, runs_from_events
from edgefarm.compressors.models import ModelBundle, get_model
from edgefarm.compressors.recipes import compress
from edgefarm.protos import agent_pb2 as pb

TRT_DATA = Path(__file__).parent / "data" / "tensorrt"
CANARY = Path(__file__).parents[1] / "controller" / "agents" / "canary.tflite"


@pytest.fixture(scope="session")
def mobilenet(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return get_model("mobilenet-v2", tmp_path_factory.getbasetemp() / "zoo-cache")  # shared with test_models_zoo


@pytest.fixture(scope="session")
def variants(mobilenet: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cache = tmp_path_factory.getbasetemp() / "zoo-cache"
    return {recipe: compress(mobilenet, recipe, cache).path for recipe in ("fp32", "int8-static")}


def _feeds() -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(0).random((1, 1, 96, 96), dtype=np.float32)}


def _ort_profile(path: Path, iterations: int = 60):
    engine = get_backend("onnxruntime").load(str(path), BackendOptions(threads=1))
    try:
        return run_profile("onnxruntime", engine, str(path), BackendOptions(threads=1), _feeds(),
                           ProfileSettings(iterations=iterations))
    finally:
        engine.close()


def test_families_compare_across_runtimes_and_glue_is_flagged():
    assert {op_family(t) for t in ("Conv", "QLinearConv", "CONV_2D", "DEPTHWISE_CONV_2D", "CaskConvolution")} == \
        {"Conv"}
    assert op_family("ConvTranspose") == "Conv" and op_family("Gemm") == op_family("FULLY_CONNECTED") == "MatMul"
    assert all(is_glue(op_family(t)) for t in ("QuantizeLinear", "DequantizeLinear", "Transpose", "ReorderOutput",
                                              "Cast", "MemcpyToHost", "Reformat"))
    assert not is_glue(op_family("Conv")) and not is_glue(op_family("Flatten"))


@pytest.mark.slow
def test_ort_profile_of_fp32_maps_fused_nodes_to_their_source_convs(variants):
    profile = _ort_profile(variants["fp32"])
    assert profile.available and profile.iterations == 60 and profile.dropped_iterations > 0
    convs = [row for row in profile.layers if row.op_family == "Conv"]
    assert len(convs) >= 25 and all(row.placement == "CPUExecutionProvider" and row.precision == "fp32"
                                    for row in convs)
    fused = next(row for row in convs if row.name.startswith("/2/Clip"))
    assert set(fused.source_nodes) == {"/0/Conv", "/2/Clip"}   # Conv + Clip fused into one NCHWc kernel
    assert all(row.timed and row.median_us > 0 and row.p90_us >= row.median_us for row in convs)
    # Σ layer medians against the profiled run's wall time: the layers are most of it, never more
    assert 0.4 <= sum(row.median_us for row in profile.layers) / profile.profiled_median_us <= 1.0


@pytest.mark.slow
def test_ort_profile_of_int8_flags_quantizer_glue_and_reads_the_executed_precision(variants):
    profile = _ort_profile(variants["int8-static"])
    glue = {row.op_type for row in profile.layers if row.is_glue}
    assert {"QuantizeLinear", "DequantizeLinear"} <= glue
    qconvs = [row for row in profile.layers if row.op_type == "QLinearConv"]
    assert len(qconvs) >= 25 and {row.precision for row in qconvs} <= {"uint8", "int8"}
    assert all("/" in row.source_nodes[0] and row.source_nodes[0].endswith("Conv") for row in qconvs)


def test_node_events_are_given_to_their_run_and_the_first_runs_dropped(tmp_path):
    events = [{"cat": "Session", "name": "model_run", "ts": 100 * i, "dur": 50} for i in range(4)]
    events += [{"cat": "Node", "name": "conv_kernel_time", "ts": 100 * i + 10, "dur": 10 + i,
                "args": {"op_name": "Conv", "provider": "CPUExecutionProvider"}} for i in range(4)]
    events += [{"cat": "Node", "name": "conv_fence_before", "ts": 5, "dur": 99}]  # older ORTs: not kernel time
    trace = tmp_path / "profile.json"
    trace.write_text(json.dumps(events))
    runs = runs_from_events(load_events(str(trace)), 2, str(trace))
    (conv,) = runs.nodes
    assert conv.per_run_us == (12.0, 13.0) and runs.run_us == (50.0, 50.0) and conv.count == 1


@pytest.mark.parametrize("content", ["{not json", json.dumps({"traceEvents": 3}), json.dumps([{"name": "model_run"}])])
def test_a_malformed_profile_names_its_file(tmp_path, content):
    trace = tmp_path / "onnxruntime_profile.json"
    trace.write_text(content)
    with pytest.raises(ProfileFormatError, match=str(trace)):
        runs_from_events(load_events(str(trace)), 0, str(trace))


@pytest.mark.slow
def test_a_malformed_profile_is_an_infrastructure_failure_not_a_crash(variants, monkeypatch, tmp_path):
    bad = tmp_path / "onnxruntime_profile_x.json"
    bad.write_text("[{\"cat\": \"Node\", truncated")
    monkeypatch.setattr("edgefarm.agent.profiling.onnxruntime.load_events",
                        lambda path: load_events(str(bad)))
    events: list[pb.BenchmarkEvent] = []
    spec = pb.BenchmarkSpec(job_id="j", backend="onnxruntime", threads=1, profile=True, profile_iterations=5,
                            warmup=pb.WarmupPolicy(min_iterations=1, min_seconds=0.01),
                            measure=pb.MeasurePolicy(min_iterations=3, min_seconds=0.05))
    Job(spec, str(variants["fp32"]), None, events.append).run()
    failure = events[-1].failure
    assert failure.kind == pb.Failure.INFRASTRUCTURE and str(bad) in failure.message


def test_a_runtime_without_a_profiler_says_not_available():
    found = run_profile("simulated", object(), "model.onnx", BackendOptions(), {}, ProfileSettings())
    assert not found.available and found.unavailable_reason.startswith("not available: backend 'simulated'")
    assert set(PROFILERS) == {"onnxruntime", "litert", "tensorrt", "openvino", "executorch"}


def test_litert_records_which_nodes_the_delegate_took_and_no_invented_time():
    engine = get_backend("litert").load(str(CANARY), BackendOptions(threads=1))
    try:
        found = run_profile("litert", engine, str(CANARY), BackendOptions(threads=1), {}, ProfileSettings())
    finally:
        engine.close()
    assert found.available and found.layers and all(not row.timed for row in found.layers)
    assert found.timing_unavailable_reason.startswith("per-op time not available")
    assert {row.placement for row in found.layers} == {"XNNPACK"}
    assert all(row.source_nodes for row in found.layers)


def test_litert_placement_walks_delegate_nodes_back_to_the_nodes_they_replaced():
    tensors = {i: {"index": i, "name": f"t{i}", "shape": np.array([1, 4]), "dtype": np.float32} for i in range(5)}
    ops = [{"index": 0, "op_name": "CONV_2D", "inputs": np.array([0]), "outputs": np.array([1])},
           {"index": 1, "op_name": "RELU", "inputs": np.array([1]), "outputs": np.array([2])},
           {"index": 2, "op_name": "CUSTOM", "inputs": np.array([2]), "outputs": np.array([3])},
           {"index": 3, "op_name": "DELEGATE", "inputs": np.array([0]), "outputs": np.array([2])}]
    rows = litert_profiler.placement_rows(ops, tensors, "GPU")
    assert [(row.op_type, row.placement) for row in rows] == [("CONV_2D", "GPU"), ("RELU", "GPU"), ("CUSTOM", "CPU")]


def test_tensorrt_inspector_json_gives_tactics_precision_onnx_names_and_dla_placement():
    layers = trt_profiler.parse_engine_information((TRT_DATA / "engine_info.json").read_text(), "engine_info.json")
    recorded = trt_profiler.load_trtexec_profile(str(TRT_DATA / "trtexec_profile.json"))   # µs per layer
    times = {name: [us] * 10 for name, us in recorded.items()}
    found = trt_profiler.layer_profile(layers, times, ProfileSettings(iterations=10), "GPU")
    rows = {row.name: row for row in found.layers}
    conv = rows["/0/Conv + /2/Clip"]
    assert conv.source_nodes == ("/0/Conv", "/2/Clip") and conv.precision == "fp16" and conv.op_family == "Conv"
    assert conv.median_us == pytest.approx(20.5) and conv.placement == "GPU"
    reformat = rows["Reformatting CopyNode for Input Tensor 0 to /0/Conv + /2/Clip"]
    assert reformat.is_glue and reformat.op_family == "Reorder"
    foreign = rows["{ForeignNode[/5/block/block.0/Conv.../9/Add]}"]
    assert foreign.placement == "DLA" and foreign.precision == "int8"
    assert rows["/18/Gemm"].op_family == "MatMul" and rows["/18/Gemm"].precision == "fp32"


def test_tensorrt_profiler_runs_become_per_layer_samples():
    runs = [{"a": 0.010, "b": 0.020}, {"a": 0.012, "b": 0.018}]
    assert trt_profiler.runs_by_layer(runs) == {"a": [10.0, 12.0], "b": [20.0, 18.0]}


@pytest.mark.parametrize("text", ["[]", "{\"Layers\": 3}", "not json"])
def test_a_malformed_inspector_document_names_where_it_came_from(text):
    with pytest.raises(ProfileFormatError, match="engine_info.json"):
        trt_profiler.parse_engine_information(text, "engine_info.json")


@pytest.mark.gpu
def test_tensorrt_profiling_pass_on_a_gpu(variants):
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT and an NVIDIA GPU")
    engine = get_backend("tensorrt").load(str(variants["fp32"]), BackendOptions())
    try:
        found = run_profile("tensorrt", engine, str(variants["fp32"]), BackendOptions(), _feeds(),
                            ProfileSettings(iterations=20))
    finally:
        engine.close()
    assert trt.__version__ and found.available and any(row.source_nodes for row in found.layers)
    assert all(row.timed for row in found.layers if row.placement == "GPU")
