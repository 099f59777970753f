"""The PyTorch steps on the real digits-cnn: pruning, fine-tuning, distillation and QAT, checked in ONNX Runtime.

Every built-in chain runs once per module into one cache; the checks read the exported
ONNX files themselves (weights, shapes, nodes), not just the numbers the steps report.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.chains import NAMED_CHAINS, parse_chain
from edgefarm.compressors.errors import RecipeParamsError, UnknownModelError
from edgefarm.compressors.models import ModelBundle, get_model
from edgefarm.compressors.models.torch_builders import BUILDERS, build, load_module
from edgefarm.compressors.recipes import Variant, compress, onnx_steps
from edgefarm.compressors.torch_steps.stages import Stage, distilled_model, run_torch_steps
from edgefarm.compressors.torch_steps.stats import count_macs, model_stats

DIGITS_MACS = 32 * 9 * 64 + 64 * 32 * 9 * 16 + 64 * 64 * 9 * 16 + 256 * 256 + 256 * 10  # by hand: 971,264
POINTS = 0.02  # "within a few points" of fp32 after fine-tuning


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    # The same directory as in test_models.py and test_compressors.py: whichever module runs first trains.
    return get_model("digits-cnn", tmp_path_factory.getbasetemp() / "digits-cnn-cache")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torch-steps-cache")


@pytest.fixture(scope="module")
def variants(digits: ModelBundle, cache: Path) -> dict[str, Variant]:
    """fp32, int8-static and every built-in chain, by recipe name."""
    return {name: compress(digits, name, cache) for name in ("fp32", "int8-static", *NAMED_CHAINS)}


def _weights(path: Path) -> dict[str, np.ndarray]:
    """The weight (not bias) of every Conv and Gemm node, in graph order, by initializer name."""
    model = onnx.load(str(path))
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    return {node.input[1]: initializers[node.input[1]] for node in model.graph.node
            if node.op_type in ("Conv", "Gemm") and node.input[1] in initializers}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _stages(digits: ModelBundle, cache: Path, recipe: str) -> list[Stage]:
    """The cached PyTorch stages of a built-in chain (nothing runs again)."""
    chain = parse_chain(NAMED_CHAINS[recipe], onnx_steps())
    return run_torch_steps(digits, [(step.name, step.params) for step in chain.torch_steps], cache)


def test_the_builder_makes_the_trained_architecture(digits: ModelBundle) -> None:
    full, narrow = build("digits-cnn"), build("digits-cnn", 0.35)
    assert sum(p.numel() for p in full.parameters()) == 124_106
    assert sum(p.numel() for p in narrow.parameters()) < 0.15 * 124_106
    assert count_macs(full, (1, 1, 8, 8)) == DIGITS_MACS
    assert digits.torch_source.builder in BUILDERS and digits.torch_source.input_shape == (1, 1, 8, 8)


def test_the_saved_weights_rebuild_the_onnx_model(digits: ModelBundle) -> None:
    import torch

    x = np.load(digits.eval_npz)["x"][:16]
    with torch.no_grad():
        logits = load_module(digits.torch_source)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, _run(digits.onnx_path, x), atol=1e-4)


def test_an_unknown_builder_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"unknown torch builder 'resnet'; valid builders: .*digits-cnn"):
        build("resnet")


def test_unstructured_pruning_reaches_half_sparsity_and_keeps_accuracy(variants: dict[str, Variant]) -> None:
    variant, fp32 = variants["unstructured50-ft"], variants["fp32"]
    weights = list(_weights(variant.path).values())
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    assert zeros == pytest.approx(0.5, abs=0.001) == variant.stats["sparsity_after"]
    assert variant.stats["sparsity_before"] == 0.0
    assert variant.stats["nonzero_params_after"] < 0.51 * variant.stats["params_after"]
    assert variant.accuracy >= fp32.accuracy - POINTS


def test_pruning_per_layer_prunes_each_layer_to_the_amount(digits: ModelBundle, cache: Path) -> None:
    variant = compress(digits, "unstructured-prune(0.3, layer)", cache)
    for name, weight in _weights(variant.path).items():
        assert (weight == 0).mean() == pytest.approx(0.3, abs=0.01), name


def test_finetuning_keeps_pruned_weights_at_zero(
    variants: dict[str, Variant], digits: ModelBundle, cache: Path
) -> None:
    prune, _ = _stages(digits, cache, "unstructured50-ft")
    pruned, tuned = _weights(prune.bundle.onnx_path), _weights(variants["unstructured50-ft"].path)
    for name, weight in pruned.items():
        assert ((weight == 0) == (tuned[name] == 0)).all(), name  # same zeros, same places
        assert not np.array_equal(weight, tuned[name])  # yet the weights were trained


def test_structured_pruning_removes_channels(variants: dict[str, Variant], digits: ModelBundle, cache: Path) -> None:
    dense = _stages(digits, cache, "prune50-ft-int8")[-1].bundle.onnx_path  # fp32, before int8
    stats = variants["prune50-ft-int8"].stats
    shapes = [w.shape for w in _weights(dense).values()]
    assert shapes == [(16, 1, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (128, 128), (10, 128)]
    assert dense.stat().st_size < 0.3 * variants["fp32"].size_bytes
    assert stats["params_after"] == 31_850 < 0.3 * stats["params_before"]
    assert stats["macs_after"] < 0.3 * stats["macs_before"] == 0.3 * DIGITS_MACS
    assert variants["prune50-ft-int8"].size_bytes < 0.4 * variants["int8-static"].size_bytes


def test_structured_pruning_keeps_accuracy_after_finetuning(variants: dict[str, Variant]) -> None:
    prune, finetune, int8 = variants["prune50-ft-int8"].steps
    assert (prune["step"], finetune["step"], int8["step"]) == ("structured-prune", "finetune", "int8-static")
    assert finetune["accuracy"] > prune["accuracy"]  # fine-tuning wins back what pruning lost
    assert variants["prune50-ft-int8"].accuracy >= variants["fp32"].accuracy - POINTS


def test_a_pruned_state_dict_loads_into_the_builder(digits: ModelBundle, cache: Path) -> None:
    import torch

    pruned = _stages(digits, cache, "prune50-ft-int8")[-1].bundle
    module = load_module(pruned.torch_source)  # digits-cnn's builder, resized to the saved weights
    x = np.load(digits.eval_npz)["x"][:8]
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), _run(pruned.onnx_path, x), atol=1e-4)
    assert model_stats(module, (1, 1, 8, 8))["params"] == 31_850


def test_2_to_4_masks_are_valid(variants: dict[str, Variant]) -> None:
    variant = variants["sparse24-ft"]
    for name, weight in _weights(variant.path).items():
        by_input = np.moveaxis(weight, 1, -1)  # groups run along the input dimension
        if by_input.shape[-1] % 4:
            assert (weight != 0).all(), name  # the first conv (1 input channel) stays dense
            continue
        nonzeros = (by_input.reshape(-1, 4) != 0).sum(axis=1)
        assert (nonzeros == 2).all(), name
    assert variant.stats["sparsity_after"] == pytest.approx(0.5, abs=0.002)
    assert variant.accuracy >= variants["fp32"].accuracy - POINTS


def test_the_distilled_student_is_small_and_accurate(variants: dict[str, Variant]) -> None:
    variant = variants["distill-int8"]
    assert variant.stats["params_after"] < 0.15 * variant.stats["params_before"]
    assert variant.stats["macs_after"] < 0.15 * variant.stats["macs_before"]
    distill = variant.steps[0]
    assert distill["step"] == "distill" and distill["accuracy"] >= 0.90
    assert variant.accuracy >= 0.90
    assert variant.size_bytes < 0.25 * variants["int8-static"].size_bytes


@pytest.mark.slow
def test_the_student_is_a_model_every_recipe_takes(
    digits: ModelBundle, cache: Path, variants: dict[str, Variant]
) -> None:
    student = distilled_model(digits, cache)
    assert student.name == "digits-cnn-student-w0.35" and student.torch_source.width == 0.35
    # The same stage as distill-int8 used: nothing was trained again.
    assert student.onnx_path == _stages(digits, cache, "distill-int8")[0].bundle.onnx_path
    # int4-weight is for MatMul-heavy models (a CNN has none); tflite-int8 is covered in test_quant_extras
    for recipe in [*(r for r in onnx_steps() if r not in ("int4-weight", "tflite-int8")), "unstructured50-ft"]:
        variant = compress(student, recipe, cache)
        assert variant.model == student.name and variant.accuracy >= 0.88, recipe
    int8 = compress(student, "int8-static", cache)
    assert int8.sha256 == variants["distill-int8"].sha256  # one model, one artifact, whichever way


def test_a_student_width_out_of_range_is_refused(digits: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(RecipeParamsError, match=r"step distill: width=1.5 is outside \(0, 1\]"):
        distilled_model(digits, tmp_path, width=1.5)
    assert list(tmp_path.iterdir()) == []


def test_qat_exports_the_int8_static_graph_with_trained_weights(variants: dict[str, Variant],
                                                               digits: ModelBundle) -> None:
    variant = variants["qat-int8"]
    ops = Counter(node.op_type for node in onnx.load(str(variant.path)).graph.node)
    # BatchNorm folded before training; int8-static then quantizes every Conv/Gemm like a PTQ model.
    assert ops["BatchNormalization"] == 0 and ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert [step["step"] for step in variant.steps] == ["qat", "int8-static"]
    assert variant.steps[1]["params"]["reduce_range"] == "yes"  # 7-bit weights, as trained
    assert _run(variant.path, np.load(digits.eval_npz)["x"][:5]).shape == (5, 10)
    assert variant.size_bytes <= 0.30 * variants["fp32"].size_bytes


def test_qat_accuracy_next_to_ptq(variants: dict[str, Variant], record_property: Callable[[str, object], None]) -> None:
    qat, ptq, fp32 = variants["qat-int8"], variants["int8-static"], variants["fp32"]
    record_property("accuracy", {"fp32": fp32.accuracy, "int8-static (PTQ)": ptq.accuracy, "qat-int8": qat.accuracy})
    assert qat.accuracy >= ptq.accuracy - 0.01, f"QAT {qat.accuracy:.4f} vs PTQ {ptq.accuracy:.4f}"
    assert qat.accuracy >= fp32.accuracy - 0.01


def test_every_step_records_params_duration_and_stats(variants: dict[str, Variant]) -> None:
    for name in NAMED_CHAINS:
        variant = variants[name]
        assert set(variant.stats) == {f"{key}_{when}" for key in ("params", "nonzero_params", "sparsity", "macs")
                                      for when in ("before", "after")}, name
        for step in variant.steps:
            assert step["duration_s"] >= 0 and isinstance(step["params"], dict), name


@pytest.mark.slow
def test_torch_steps_are_deterministic(digits: ModelBundle, tmp_path: Path) -> None:
    chain = "structured-prune(0.25) -> finetune(epochs=1)"
    first, second = compress(digits, chain, tmp_path / "a"), compress(digits, chain, tmp_path / "b")
    assert first.sha256 == second.sha256 == sha256_file(second.path)


def test_steps_leave_torch_settings_as_they_were(digits: ModelBundle, tmp_path: Path) -> None:
    import torch

    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    compress(digits, "unstructured-prune(0.1)", tmp_path)
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng_state)
