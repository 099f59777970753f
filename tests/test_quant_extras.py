"""mixed-int8, int4-weight and tflite-int8 on the zoo models, with the real ONNX Runtime, TensorFlow and LiteRT.

The zoo models come from the session cache test_models_zoo.py fills (the same directory).
tflite-int8 converts in its own TensorFlow venv, made on the first run (a few minutes, once).
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors import tflite_export
from edgefarm.compressors.errors import BadModelError, CalibrationDataError, EvalDataError
from edgefarm.compressors.models import ModelBundle, bundle_from_file, get_model
from edgefarm.compressors.recipes import RECIPES, RecipeParamsError, Variant, compress

INT8_DEFAULTS = {"activation_type": "uint8", "weight_type": "int8", "reduce_range": "yes"}  # int8-static's


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "zoo-cache"  # shared with test_models_zoo.py


@pytest.fixture(scope="session")
def mobilenet(zoo_cache: Path) -> ModelBundle:
    return get_model("mobilenet-v2", zoo_cache)


@pytest.fixture(scope="session")
def minilm(zoo_cache: Path) -> ModelBundle:
    return get_model("minilm", zoo_cache)


@pytest.fixture(scope="module")
def variant_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("extras-variants")


def _details(variant: Variant) -> dict:
    return json.loads((variant.path.parent / "details.json").read_text())


def _relu_only_model(tmp_path: Path) -> ModelBundle:
    """A model with no weight layer at all: nothing for mixed precision or int4 to work on."""
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"], name="relu")], "relu",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "relu.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
    np.savez(tmp_path / "eval.npz", x=np.eye(4, dtype=np.float32), y=np.arange(4))
    return bundle_from_file(tmp_path / "relu.onnx", tmp_path / "calib.npz", tmp_path / "eval.npz")


@pytest.fixture
def relu_model(tmp_path: Path) -> ModelBundle:
    return _relu_only_model(tmp_path)


def test_the_new_recipes_are_registered_after_the_first_four() -> None:
    names = list(RECIPES)
    assert names[:4] == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    assert {"mixed-int8", "int4-weight", "tflite-int8"} <= set(names)
    assert RECIPES["tflite-int8"].artifact == "model.tflite" and RECIPES["mixed-int8"].artifact == "model.onnx"


@pytest.mark.slow
def test_mixed_int8_meets_its_budget_and_records_the_float_layers(
    mobilenet: ModelBundle, variant_cache: Path
) -> None:
    fp32 = compress(mobilenet, "fp32", variant_cache)
    int8 = compress(mobilenet, "int8-static", variant_cache)
    mixed = compress(mobilenet, "mixed-int8", variant_cache)
    assert mixed.params == {"max_drop": "0.5", "calibration": "minmax", **INT8_DEFAULTS}
    assert (fp32.accuracy - mixed.accuracy) * 100 <= 0.5
    # Keeping layers in float bounds the drop against fp32 (above); it need not beat full int8 on every
    # host: on 360 eval images the two can differ by a sample either way.
    assert mixed.accuracy >= int8.accuracy - 2 / 360 and mixed.size_bytes < 0.5 * fp32.size_bytes
    details = _details(mixed)
    layers = {node.name for node in onnx.load(str(mobilenet.onnx_path)).graph.node}
    kept = details["kept_float"]
    assert set(kept) <= layers
    assert details["drop_points"] <= 0.5 and details["quality"] == pytest.approx(mixed.accuracy)
    assert len(details["ranking"]) == details["weight_layers"]
    assert [trial["kept_float"] for trial in details["trials"]] == list(range(len(kept) + 1))
    # The fewest float layers that meet the budget: each trial before the last missed it. Where this
    # host's training makes full int8 meet it already (it does on AVX-512 VNNI), none stay float.
    assert all(trial["drop_points"] > 0.5 for trial in details["trials"][:-1])
    if kept:
        assert details["ranking"][0]["layer"] == kept[0]


def test_mixed_int8_rejects_a_budget_it_does_not_offer(relu_model: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(RecipeParamsError, match=r"mixed-int8: max_drop='3' is not one of 0.5, 0.25, 1, 2"):
        compress(relu_model, "mixed-int8", tmp_path, {"max_drop": "3"})


def test_mixed_int8_on_a_model_without_weight_layers_names_the_step(relu_model: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(BadModelError, match=r"recipe mixed-int8: relu has no Conv, ConvTranspose, Gemm, MatMul "
                                            r"layer with constant weights"):
        compress(relu_model, "mixed-int8", tmp_path / "cache")


def test_mixed_int8_needs_evaluation_data(relu_model: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match=r"recipe mixed-int8: relu has no evaluation data, which the max_drop"):
        compress(replace(relu_model, eval_npz=None), "mixed-int8", tmp_path / "cache")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["mixed-int8", "tflite-int8"])
@pytest.mark.parametrize(
    ("x", "message"),
    [(np.zeros((20, 1, 8, 8), np.float32), r"has shape \[20, 1, 8, 8\], but model input 'input' takes "
                                           r"float32\[batch, 1, 96, 96\]"),
     (np.zeros((20, 1, 96, 96)), r"is float64, but model input 'input' takes float32")],
    ids=["wrong-shape", "float64"],
)
def test_bad_calibration_data_fails_before_any_slow_step(
    mobilenet: ModelBundle, tmp_path: Path, recipe: str, x: np.ndarray, message: str
) -> None:
    np.savez(tmp_path / "calib.npz", x=x)
    bad = replace(mobilenet, calib_npz=tmp_path / "calib.npz")
    with pytest.raises(CalibrationDataError, match=rf"recipe {recipe}: .*{message}"):
        compress(bad, recipe, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "variants").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "max_size", "min_cosine"),
    [({}, 0.20, 0.97), ({"embeddings": "float"}, 0.62, 0.97), ({"block_size": "128"}, 0.16, 0.95)],
    ids=["default", "float-embeddings", "block-128"],
)
def test_int4_weight_shrinks_minilm_and_keeps_its_embeddings(
    minilm: ModelBundle, variant_cache: Path, params: dict[str, str], max_size: float, min_cosine: float
) -> None:
    fp32 = compress(minilm, "fp32", variant_cache)
    int4 = compress(minilm, "int4-weight", variant_cache, params)
    assert int4.size_bytes <= max_size * fp32.size_bytes
    assert int4.accuracy >= min_cosine  # mean cosine to PyTorch's embeddings of the held-out sentences
    details = _details(int4)
    assert details["matmuls_quantized"] == details["matmuls_with_weights"] == 36  # 6 layers x (Q, K, V, O, 2 FFN)
    tables = details["embedding_tables_quantized"]
    assert ("/bert/embeddings/word_embeddings/Gather" in tables) is (params.get("embeddings") != "float")
    ops = {node.op_type for node in onnx.load(str(int4.path)).graph.node}
    assert "MatMulNBits" in ops


def test_int4_weight_on_a_model_without_matmul_weights_names_the_ops(relu_model: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(BadModelError, match=r"recipe int4-weight: relu has no MatMul with a constant weight "
                                            r"\(its ops: Relu\); .*use int8-dynamic or int8-static"):
        compress(relu_model, "int4-weight", tmp_path)


@pytest.mark.slow
def test_tflite_int8_makes_a_full_integer_model_litert_runs(mobilenet: ModelBundle, variant_cache: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgefarm.agent.backends.base import BackendOptions
    from edgefarm.agent.backends.litert import load

    fp32 = compress(mobilenet, "fp32", variant_cache)
    variant = compress(mobilenet, "tflite-int8", variant_cache)
    assert sha256_file(mobilenet.onnx_path) == fp32.sha256  # onnx2tf rewrites its input: it got a copy
    assert variant.path.name == "model.tflite" and variant.size_bytes <= 0.40 * fp32.size_bytes
    assert abs(fp32.accuracy - variant.accuracy) <= 0.02
    interpreter = Interpreter(model_path=str(variant.path))
    io = interpreter.get_input_details() + interpreter.get_output_details()
    assert [detail["dtype"] for detail in io] == [np.int8, np.int8]
    details = _details(variant)
    assert details["float_tensors"] == 0 and details["inputs"][0]["shape"] == [1, 96, 96, 1]
    if tflite_export.shutil.which("edgetpu_compiler") is None:
        assert details["edgetpu"] == {"compiled": False, "reason": tflite_export.NO_EDGETPU}
    engine = load(str(variant.path), BackendOptions(threads=1, delegate="builtin"))
    x = np.load(mobilenet.eval_npz)["x"][:1].transpose(0, 2, 3, 1)
    assert engine.run({engine.inputs[0].name: x})[0].shape == (1, 10)
    assert compress(mobilenet, "tflite-int8", variant_cache) == variant  # a cache hit finds model.tflite


@pytest.mark.slow
def test_tflite_int8_refuses_integer_model_inputs(minilm: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(BadModelError, match=r"recipe tflite-int8: full-integer TFLite quantizes float32 inputs "
                                            r"to int8, but minilm takes input_ids \(int64"):
        compress(minilm, "tflite-int8", tmp_path)


@pytest.mark.slow
def test_tflite_int8_names_the_op_without_an_int8_kernel(tmp_path: Path) -> None:
    # Erf: GELU's building block in exported transformers; TFLite has no builtin kernel for it.
    graph = helper.make_graph([helper.make_node("Erf", ["input"], ["output"], name="erf")], "erf",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "erf.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
    bundle = bundle_from_file(tmp_path / "erf.onnx", tmp_path / "calib.npz")
    before = sha256_file(bundle.onnx_path)
    with pytest.raises(BadModelError, match=r"recipe tflite-int8: full-integer conversion \(TFLiteConverter, int8 "
                                            r"kernels only\) failed for erf: .*'tf.Erf' op is neither a custom op"):
        compress(bundle, "tflite-int8", tmp_path / "cache")
    assert sha256_file(bundle.onnx_path) == before  # the user's file is not rewritten by onnx2tf


EDGETPU_COMPILER_OUTPUT = """Edge TPU Compiler version 16.0.384591198
Input: model.tflite
Output: model_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        19         Mapped to Edge TPU
DEPTHWISE_CONV_2D              9          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
Number of operations that will run on Edge TPU: 37
Number of operations that will run on CPU: 1
"""


def test_edgetpu_compiler_output_is_read_for_op_counts() -> None:
    assert tflite_export.edgetpu_op_counts(EDGETPU_COMPILER_OUTPUT) == {"edgetpu_ops": 37, "cpu_ops": 1}
    assert tflite_export.edgetpu_op_counts("garbage") == {"edgetpu_ops": -1, "cpu_ops": -1}


def test_a_fake_edgetpu_compiler_on_path_is_run_and_its_model_kept(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in script, not the real compiler: it checks the wiring (arguments, output file, counts).
    tools, work = tmp_path / "bin", tmp_path / "work"
    tools.mkdir(), work.mkdir()
    fake = tools / "edgetpu_compiler"
    fake.write_text("#!/bin/sh\n# -s -o OUT_DIR MODEL\ncp \"$4\" \"$3/model_edgetpu.tflite\"\n"
                    f"cat <<'EOF'\n{EDGETPU_COMPILER_OUTPUT}EOF\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    model = tmp_path / "model.tflite"
    model.write_bytes(b"tflite")
    verdict = tflite_export.compile_for_edgetpu(model, work)
    assert verdict == {"compiled": True, "file": "model_edgetpu.tflite", "edgetpu_ops": 37, "cpu_ops": 1}
    assert (tmp_path / "model_edgetpu.tflite").read_bytes() == b"tflite"
