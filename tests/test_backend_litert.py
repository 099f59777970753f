"""The LiteRT backend against real .tflite models made by TensorFlow's own converter.

The models come from tests/tflite_models/make_models.py, run in its own virtual
environment (.venv-tflite/: TensorFlow clashes with the main venv). The first session
on a fresh clone creates it: about 40 s (venv 7 s, pip install tensorflow-cpu 30 s,
conversion 4 s); later sessions reuse the cached models under build/.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgefarm.agent.backends import litert
from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec
from tests.tflite_models import run_or_fail

# Dequantized INT8 logits land within ~1.2 output steps (scale 0.0031) of the float ones; 0.02 leaves margin.
INT8_TOLERANCE = 0.02


@pytest.fixture(scope="session")
def models(tflite_models: Path) -> Path:
    return tflite_models


@pytest.fixture(scope="session")
def sample(models: Path) -> np.ndarray:
    return np.load(models / "sample_input.npy")


@pytest.fixture(scope="session")
def reference(models: Path) -> np.ndarray:
    """TensorFlow's own float output for `sample`, computed before conversion."""
    return np.load(models / "reference_output.npy")


def _run_model(path: Path, batch: np.ndarray, **options: object) -> tuple[litert.LiteRTEngine, np.ndarray]:
    engine = litert.load(str(path), BackendOptions(batch_size=len(batch), **options))  # type: ignore[arg-type]
    try:
        (output,) = engine.run({engine.inputs[0].name: batch})
    finally:
        engine.close()
    return engine, output


def test_version_names_the_installed_runtime() -> None:
    assert litert.version() is not None
    assert litert.version().startswith("ai-edge-litert ")
    assert {"xnnpack", "builtin"} <= set(litert.providers())


def test_float_model_matches_tensorflow(models: Path, sample: np.ndarray, reference: np.ndarray) -> None:
    engine, output = _run_model(models / "float32.tflite", sample)
    assert engine.inputs == [TensorSpec("serving_default_image:0", [4, 8, 8, 3], "float32")]
    assert engine.provider == "xnnpack"
    assert engine.compute_separable is False
    np.testing.assert_allclose(output, reference, atol=1e-5)


@pytest.mark.parametrize("model_name, stored_dtype", [("int8", np.int8), ("uint8", np.uint8)])
def test_quantized_model_takes_and_returns_float(
        models: Path, sample: np.ndarray, reference: np.ndarray, model_name: str, stored_dtype: type) -> None:
    from ai_edge_litert.interpreter import Interpreter

    raw = Interpreter(model_path=str(models / f"{model_name}.tflite"))
    assert raw.get_input_details()[0]["dtype"] == stored_dtype    # the file really is full-integer
    assert raw.get_output_details()[0]["dtype"] == stored_dtype
    engine, output = _run_model(models / f"{model_name}.tflite", sample)
    assert engine.inputs[0].dtype == "float32"
    assert output.dtype == np.float32 and output.shape == reference.shape
    np.testing.assert_allclose(output, reference, atol=INT8_TOLERANCE)
    _float_engine, float_output = _run_model(models / "float32.tflite", sample)
    np.testing.assert_allclose(output, float_output, atol=INT8_TOLERANCE)


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_is_honoured(
        models: Path, sample: np.ndarray, reference: np.ndarray, threads: int) -> None:
    _engine, output = _run_model(models / "int8.tflite", sample, threads=threads)
    np.testing.assert_allclose(output, reference, atol=INT8_TOLERANCE)


def test_negative_thread_count_is_rejected(models: Path) -> None:
    with pytest.raises(BadInputError, match="threads must be >= 0"):
        litert.load(str(models / "float32.tflite"), BackendOptions(threads=-1))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_dynamic_batch_is_resized(
        models: Path, sample: np.ndarray, reference: np.ndarray, batch_size: int) -> None:
    engine, output = _run_model(models / "int8.tflite", sample[:batch_size])
    assert engine.inputs[0].shape == [batch_size, 8, 8, 3]
    np.testing.assert_allclose(output, reference[:batch_size], atol=INT8_TOLERANCE)


def test_builtin_delegate_runs_without_xnnpack(
        models: Path, sample: np.ndarray, reference: np.ndarray) -> None:
    engine, output = _run_model(models / "float32.tflite", sample, delegate="builtin")
    assert engine.provider == "builtin"
    np.testing.assert_allclose(output, reference, atol=1e-5)


def test_run_timed_reports_host_time_only(models: Path, sample: np.ndarray) -> None:
    engine = litert.load(str(models / "int8.tflite"), BackendOptions(batch_size=4))
    timing = engine.run_timed({engine.inputs[0].name: sample})
    engine.close()
    assert timing.host_ns > 0 and timing.compute_ns is None


def test_onnx_file_is_rejected(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4]) for name in ("x", "y"))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "tiny", [x], [y])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(BadInputError, match="not a TFLite flatbuffer"):
        litert.load(str(path), BackendOptions())


def test_corrupt_flatbuffer_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4)
    with pytest.raises(BadInputError, match="LiteRT cannot load"):
        litert.load(str(path), BackendOptions())


def test_wrong_input_shape_names_expected_and_given(models: Path, sample: np.ndarray) -> None:
    engine = litert.load(str(models / "float32.tflite"), BackendOptions(batch_size=4))
    wrong = np.zeros((4, 8, 8, 4), np.float32)
    with pytest.raises(BadInputError, match=r"expects shape \[4, 8, 8, 3\], given \[4, 8, 8, 4\]"):
        engine.run({engine.inputs[0].name: wrong})
    with pytest.raises(BadInputError, match="expects dtype float32, given float64"):
        engine.run({engine.inputs[0].name: sample.astype(np.float64)})
    with pytest.raises(BadInputError, match="inputs expected"):
        engine.run({"image": sample})
    engine.close()


def test_unknown_delegate_lists_the_valid_ones(models: Path) -> None:
    with pytest.raises(BadInputError, match="valid delegates: xnnpack, builtin, edgetpu, gpu"):
        litert.load(str(models / "float32.tflite"), BackendOptions(delegate="nnapi"))


def test_edgetpu_without_an_edge_tpu_is_unavailable(models: Path) -> None:
    if litert.edgetpu_devices():
        pytest.skip("an Edge TPU is attached here: the hardware tests below cover it")
    with pytest.raises(BackendUnavailableError) as raised:
        litert.load(str(models / "int8.tflite"), BackendOptions(delegate="edgetpu"))
    message = str(raised.value)
    assert "libedgetpu.so.1" in message
    if "cannot open shared object file" in message:   # no Edge TPU runtime installed (this machine, CI)
        assert "install Coral's libedgetpu1-std" in message
    else:                                              # runtime installed, nothing plugged in
        assert "Failed to load delegate from libedgetpu.so.1" in message
        assert "No Edge TPU found" in message


# A delegate library that refuses to start, as libedgetpu.so.1 does with no Edge TPU plugged in:
# it drives the runtime's real load_delegate() error path ("Failed to load delegate from ...").
_REFUSING_DELEGATE_C = """
#include <stddef.h>
void* tflite_plugin_create_delegate(char** keys, char** values, size_t count, void (*report)(const char*)) {
  return NULL;
}
void tflite_plugin_destroy_delegate(void* delegate) {}
"""


@pytest.fixture(scope="session")
def refusing_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler to build the stub delegate library")
    folder = tmp_path_factory.mktemp("refusing-delegate")
    (folder / "refusing.c").write_text(_REFUSING_DELEGATE_C)
    library = folder / "librefusing_delegate.so"
    run_or_fail([compiler, "-shared", "-fPIC", "-o", str(library), str(folder / "refusing.c")], "building the stub")
    return library


@pytest.mark.parametrize("devices, advice", [
    ([], "No Edge TPU found on this board"),
    (["usb 18d1:9302 at 2-1"], "An Edge TPU is attached (usb 18d1:9302 at 2-1) but could not be opened"),
])
def test_edgetpu_runtime_that_cannot_open_a_device_says_why(
        models: Path, refusing_delegate: Path, monkeypatch: pytest.MonkeyPatch,
        devices: list[str], advice: str) -> None:
    """The runtime's text is the same for no device and no permission; the advice tells them apart."""
    monkeypatch.setattr(litert, "_edgetpu_library", lambda: str(refusing_delegate))
    monkeypatch.setattr(litert, "edgetpu_devices", lambda: devices)
    with pytest.raises(BackendUnavailableError) as raised:
        litert.load(str(models / "int8.tflite"), BackendOptions(delegate="edgetpu"))
    message = str(raised.value)
    assert message.startswith(f"Failed to load delegate from {refusing_delegate}.")
    assert advice in message


def test_gpu_delegate_without_its_library_is_unavailable(models: Path) -> None:
    if "gpu" in litert.providers():
        pytest.skip("this machine has a LiteRT GPU delegate library")
    with pytest.raises(BackendUnavailableError, match="libtensorflowlite_gpu_delegate.so"):
        litert.load(str(models / "float32.tflite"), BackendOptions(delegate="gpu"))


def _require_edge_tpu() -> None:
    if not litert.edgetpu_devices():
        pytest.skip("no Edge TPU attached (no USB 1a6e:089a / 18d1:9302, no /dev/apex_*)")


@pytest.mark.hardware
def test_edgetpu_refuses_an_uncompiled_model(models: Path) -> None:
    """The delegate opens the real Edge TPU, then the backend refuses a model with nothing to run there."""
    _require_edge_tpu()
    with pytest.raises(BadInputError, match="not compiled for the Edge TPU"):
        litert.load(str(models / "int8.tflite"), BackendOptions(delegate="edgetpu"))


@pytest.mark.hardware
def test_edgetpu_runs_a_compiled_model() -> None:
    """Needs EDGEFARM_EDGETPU_MODEL: a *_edgetpu.tflite from edgetpu_compiler (not installable here)."""
    _require_edge_tpu()
    compiled = os.environ.get("EDGEFARM_EDGETPU_MODEL")
    if not compiled:
        pytest.skip("set EDGEFARM_EDGETPU_MODEL to a model compiled by edgetpu_compiler")
    engine = litert.load(compiled, BackendOptions(delegate="edgetpu"))
    feeds = {spec.name: np.random.default_rng(0).uniform(0, 1, spec.shape).astype(spec.dtype)
             for spec in engine.inputs}
    outputs = engine.run(feeds)
    engine.close()
    assert engine.provider == "edgetpu"
    assert all(np.isfinite(output).all() for output in outputs)
