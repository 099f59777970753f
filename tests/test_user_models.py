"""The user-shaped test models (tests/user_models.py) really are what their docstrings say:
declared inputs, a shape or value ONNX Runtime runs at, and one it rejects."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

from tests import user_models

ORT_ERRORS = (Fail, InvalidArgument)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every model, built once for the module: the PyTorch exports take about a second."""
    out_dir = tmp_path_factory.mktemp("user-models")
    return {build.__name__: build(out_dir) for build in user_models.ALL}


def declared_inputs(path: Path) -> dict[str, tuple[list[str | int], int]]:
    """name -> (dims, with symbolic names as strings; ONNX element type), as the file declares them."""
    inputs = onnx.load(str(path)).graph.input
    return {value.name: ([dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim],
                         value.type.tensor_type.elem_type) for value in inputs}


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def floats(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", [build.__name__ for build in user_models.ALL])
def test_model_passes_the_checker_at_opset_17(models: dict[str, Path], name: str) -> None:
    model = onnx.load(str(models[name]))
    onnx.checker.check_model(model, full_check=True)
    assert models[name].name == f"{name}.onnx"
    assert [(opset.domain, opset.version) for opset in model.opset_import] == [("", 17)]
    assert all(init.data_type != TensorProto.DOUBLE for init in model.graph.initializer)


@pytest.mark.parametrize("build", user_models.ALL, ids=lambda build: build.__name__)
def test_builders_are_deterministic(models: dict[str, Path], tmp_path: Path, build) -> None:
    assert build(tmp_path).read_bytes() == models[build.__name__].read_bytes()


def test_detector_declares_dynamic_batch_height_width(models: dict[str, Path]) -> None:
    assert declared_inputs(models["detector"]) == {
        "images": (["batch", 3, "height", "width"], TensorProto.FLOAT)}
    assert user_models.detector_shape() == (1, 3, 320, 320)


def test_detector_runs_at_sizes_divisible_by_32(models: dict[str, Path]) -> None:
    detector = session(models["detector"])
    (detections,) = detector.run(None, {"images": floats(*user_models.detector_shape())})
    assert detections.shape == (1, 40 * 40 + 20 * 20 + 10 * 10, 4 + user_models.DETECTOR_CLASSES)
    (detections,) = detector.run(None, {"images": floats(2, 3, 256, 320)})
    assert detections.shape == (2, 32 * 40 + 16 * 20 + 8 * 10, 4 + user_models.DETECTOR_CLASSES)


@pytest.mark.parametrize("height_width", [(1, 1), (100, 100), (320, 100)])
def test_detector_fails_in_concat_when_not_divisible_by_32(models: dict[str, Path], height_width) -> None:
    with pytest.raises(ORT_ERRORS, match="Concat"):
        session(models["detector"]).run(None, {"images": floats(1, 3, *height_width)})


def test_ocr_runs_at_width_128_and_fails_at_width_1(models: dict[str, Path]) -> None:
    assert declared_inputs(models["ocr"]) == {"x": ([1, 1, 32, "width"], TensorProto.FLOAT)}
    ocr = session(models["ocr"])
    (logits,) = ocr.run(None, {"x": floats(1, 1, 32, 128)})
    assert logits.shape == (1, user_models.OCR_CLASSES, 128 // 4 - 2)
    with pytest.raises(ORT_ERRORS, match="Conv"):
        ocr.run(None, {"x": floats(1, 1, 32, 1)})


def test_two_input_is_static_and_needs_both_inputs(models: dict[str, Path]) -> None:
    assert declared_inputs(models["two_input"]) == {
        "image": ([1, 3, 64, 64], TensorProto.FLOAT), "meta": ([1, 8], TensorProto.FLOAT)}
    classifier = session(models["two_input"])
    (scores,) = classifier.run(None, {"image": floats(1, 3, 64, 64), "meta": floats(1, 8)})
    assert scores.shape == (1, 10)
    with pytest.raises(ORT_ERRORS, match="image"):
        classifier.run(None, {"image": floats(1, 3, 32, 32), "meta": floats(1, 8)})
    with pytest.raises(ValueError, match="meta"):
        classifier.run(None, {"image": floats(1, 3, 64, 64)})


def test_stateful_declares_a_scalar_int64_sample_rate(models: dict[str, Path]) -> None:
    assert declared_inputs(models["stateful"]) == {
        "input": ([1, 512], TensorProto.FLOAT), "state": ([1, 1, 64], TensorProto.FLOAT),
        "sr": ([], TensorProto.INT64)}


def test_stateful_runs_at_16k_and_updates_its_state(models: dict[str, Path]) -> None:
    vad = session(models["stateful"])
    state = np.zeros((1, 1, 64), np.float32)
    chunk = floats(1, 512)
    prob, state_out = vad.run(None, {"input": chunk, "state": state, "sr": np.array(16000, np.int64)})
    assert prob.shape == (1, 1) and prob.dtype == np.float32 and 0 < prob[0, 0] < 1
    assert state_out.shape == (1, 1, 64) and not np.allclose(state_out, state)
    next_prob, _ = vad.run(None, {"input": chunk, "state": state_out, "sr": np.array(16000, np.int64)})
    assert next_prob[0, 0] != prob[0, 0]   # the state really feeds the next step


@pytest.mark.parametrize("rate", [1, 8000, 16001, 32000])
def test_stateful_fails_at_any_other_sample_rate(models: dict[str, Path], rate: int) -> None:
    feeds = {"input": floats(1, 512), "state": np.zeros((1, 1, 64), np.float32), "sr": np.array(rate, np.int64)}
    with pytest.raises(ORT_ERRORS, match="Reshape|GRU"):
        session(models["stateful"]).run(None, feeds)


def test_shared_symbol_inputs_share_batch_and_seq(models: dict[str, Path]) -> None:
    assert declared_inputs(models["shared_symbol"]) == {
        "input_ids": (["batch", "seq"], TensorProto.INT64), "attention_mask": (["batch", "seq"], TensorProto.INT64)}


def test_shared_symbol_is_a_masked_mean(models: dict[str, Path]) -> None:
    encoder = session(models["shared_symbol"])
    ids = np.array([[5, 17, 999, 0, 0], [3, 4, 8, 9, 10]], np.int64)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
    (embedding,) = encoder.run(None, {"input_ids": ids, "attention_mask": mask})
    assert embedding.shape == (2, 16) and embedding.dtype == np.float32
    ids[0, 3:] = 123   # padding positions do not count
    (repadded,) = encoder.run(None, {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_array_equal(repadded, embedding)


def test_shared_symbol_fails_on_an_id_outside_the_vocabulary(models: dict[str, Path]) -> None:
    feeds = {"input_ids": np.array([[1, user_models.VOCAB]], np.int64), "attention_mask": np.ones((1, 2), np.int64)}
    with pytest.raises(ORT_ERRORS, match="Gather"):
        session(models["shared_symbol"]).run(None, feeds)


@pytest.mark.parametrize("height_width", [(8, 8), (37, 53), (224, 160)])
def test_dynamic_classifier_runs_at_any_size(models: dict[str, Path], height_width) -> None:
    assert declared_inputs(models["dynamic_classifier"]) == {
        "input": ([1, 3, "height", "width"], TensorProto.FLOAT)}
    (logits,) = session(models["dynamic_classifier"]).run(None, {"input": floats(1, 3, *height_width)})
    assert logits.shape == (1, 10)


def test_dynamic_classifier_takes_three_channels_only(models: dict[str, Path]) -> None:
    with pytest.raises(ORT_ERRORS, match="input"):
        session(models["dynamic_classifier"]).run(None, {"input": floats(1, 1, 32, 32)})
