"""The OpenVINO backend against the real openvino: ONNX and IR bundles, settings, PERF_COUNT profiles, bad input."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks.models import mlp_model
from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError
from edgefarm.agent.profiling import ProfileSettings, run_profile
from edgefarm.agent.profiling.openvino import exec_precision
from tests.test_backend_onnxruntime import conv_bn_model

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install 'edgefarm[openvino]')")
from edgefarm.agent.backends import openvino as ov_backend  # noqa: E402


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mlp_model(tmp_path_factory.mktemp("ov") / "mlp.onnx")


@pytest.fixture(scope="module")
def ir_bundle(mlp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ir")
    ov.save_model(ov.convert_model(str(mlp)), str(folder / "model.xml"), compress_to_fp16=False)
    return ov_backend.pack_ir(folder / "model.xml", folder / "model.ovir")


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_version_and_the_cpu_plugin_are_reported() -> None:
    assert ov_backend.version() == ov.get_version().split("-")[0]
    assert "CPU" in ov_backend.providers()


def test_an_onnx_model_runs_and_matches_onnxruntime(mlp: Path) -> None:
    engine = ov_backend.load(str(mlp), BackendOptions(threads=1))
    x = _x(tuple(engine.inputs[0].shape))
    np.testing.assert_allclose(engine.run({engine.inputs[0].name: x})[0], _ort(mlp, x), rtol=1e-4, atol=1e-5)
    assert engine.provider == "CPU (f32, LATENCY)"   # fp32 pinned: no silent bf16 on AMX Xeons
    engine.close()


def test_an_ir_bundle_runs_like_the_onnx_it_came_from(mlp: Path, ir_bundle: Path) -> None:
    engine = ov_backend.load(str(ir_bundle), BackendOptions(batch_size=3))
    assert engine.inputs[0].shape[0] == 3          # the dynamic batch fixed at the job's batch size
    x = _x(tuple(engine.inputs[0].shape))
    np.testing.assert_allclose(engine.run({engine.inputs[0].name: x})[0], _ort(mlp, x), rtol=1e-4, atol=1e-5)


def test_threads_hint_and_precision_reach_the_compiled_model(mlp: Path) -> None:
    engine = ov_backend.load(str(mlp), BackendOptions(threads=2, performance_hint="throughput", precision="bf16"))
    assert engine.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    assert str(engine.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert engine.provider == "CPU (bf16, THROUGHPUT)"


@pytest.mark.parametrize(("options", "message"), [
    (BackendOptions(performance_hint="fast"), "unknown OpenVINO performance hint 'fast'; valid: latency, throughput"),
    (BackendOptions(precision="int8"), "unknown OpenVINO precision 'int8'"),
    (BackendOptions(delegate="xnnpack"), "delegate: not settings of the 'openvino' backend"),
])
def test_settings_openvino_would_ignore_are_refused(mlp: Path, options: BackendOptions, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        ov_backend.load(str(mlp), options)


def test_a_device_plugin_that_is_not_here_is_unavailable(mlp: Path) -> None:
    if "NPU" in ov_backend.providers():
        pytest.skip("this machine has an NPU")
    with pytest.raises(BackendUnavailableError, match=r"OpenVINO has no NPU device here \(it finds CPU"):
        ov_backend.load(str(mlp), BackendOptions(device="NPU"))


def test_an_ir_without_its_bin_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "model.xml").write_text("<net/>")
    with pytest.raises(BadInputError) as caught:
        ov_backend.pack_ir(tmp_path / "model.xml", tmp_path / "model.ovir")
    assert "model.bin is not beside it" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("content", "message"), [
    (b"\x18\x00\x00\x00TFL3" + bytes(32), "this is a TFLite model; run it with the 'litert' backend"),
    (b"\x18\x00\x00\x00ET12" + bytes(32), "this is an ExecuTorch program"),
    (b"not a model at all", "OpenVINO cannot read .* as ONNX or IR"),
])
def test_a_file_openvino_cannot_read_is_bad_input(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "artifact"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as caught:
        ov_backend.load(str(path), BackendOptions())
    assert "\n" not in str(caught.value)


def test_a_tar_that_is_not_an_ir_bundle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with tarfile.open(tmp_path / "bundle", "w") as bundle:
        bundle.add(str(tmp_path / "readme.txt"), arcname="readme.txt")
    with pytest.raises(BadInputError, match=r"not an OpenVINO IR bundle: it holds \['readme.txt'\]"):
        ov_backend.load(str(tmp_path / "bundle"), BackendOptions())


def test_perf_count_profile_names_precision_and_source_layers(tmp_path: Path) -> None:
    model = conv_bn_model(tmp_path / "conv_bn.onnx")
    engine = ov_backend.load(str(model), BackendOptions(threads=1))
    feeds = {"input": _x((1, 8, 16, 16))}
    found = run_profile("openvino", engine, str(model), BackendOptions(threads=1), feeds,
                        ProfileSettings(iterations=5, dropped=1))
    assert found.available and found.iterations == 5 and found.profiler.startswith("openvino PERF_COUNT")
    convs = [row for row in found.layers if row.op_family == "Conv"]
    assert len(convs) == 3 and all(row.precision == "fp32" and row.placement == "CPU" for row in convs)
    # Each Convolution carries the BatchNormalization and Relu it was fused with, for the layer diff
    fused = {name for row in convs for name in row.source_nodes}
    assert len(fused) > len(convs)
    assert all(row.timed and row.output_shapes == ("1x8x16x16",) for row in convs)


@pytest.mark.parametrize(("exec_type", "precision"), [
    ("jit_avx2_I8", "int8"), ("brgconv_avx512_amx_bf16", "bf16"), ("jit_uni_f32", "fp32"), ("ref_any_FP32", "fp32"),
    ("gemm_acl_f16", "fp16"), ("jit_avx512_u8", "int8"), ("undef", ""),
])
def test_exec_type_tells_the_precision_that_ran(exec_type: str, precision: str) -> None:
    assert exec_precision(exec_type) == precision


def test_source_names_recover_the_onnx_node_openvino_renamed() -> None:
    from edgefarm.agent.profiling.openvino import source_names

    assert source_names(["/9/Gemm/WithoutBiases/DequantizationMultiply", "logits"]) == (
        "/9/Gemm/WithoutBiases/DequantizationMultiply", "logits", "/9/Gemm")
    assert source_names(["/0/Conv/WithoutBiases", "/0/Conv", "", "/1/Relu"]) == ("/0/Conv/WithoutBiases", "/0/Conv",
                                                                                 "/1/Relu")
