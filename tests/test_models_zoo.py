"""The model zoo beyond digits-cnn: mobilenet-v2 (trained here), minilm (shipped weights) and a user's torch module.

Both zoo models are built once per session into one cache directory (test_quant_extras.py
uses the same one): mobilenet-v2 trains for about a minute, minilm exports in about half that.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from edgefarm.compressors.errors import BadModelError, EvalDataError
from edgefarm.compressors.evaluate import embedding_cosine, row_cosines
from edgefarm.compressors.models import ModelBundle, get_model, minilm, mobilenet_v2, model_names
from edgefarm.compressors.models.torch_builders import BUILDERS, load_module
from edgefarm.compressors.models.torch_module import bundle_from_torch
from edgefarm.compressors.recipes import compress


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "zoo-cache"


@pytest.fixture(scope="session")
def mobilenet(zoo_cache: Path) -> ModelBundle:
    return get_model("mobilenet-v2", zoo_cache)


@pytest.fixture(scope="session")
def minilm_bundle(zoo_cache: Path) -> ModelBundle:
    return get_model("minilm", zoo_cache)


def _run(onnx_path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_the_zoo_models_are_registered() -> None:
    assert {"digits-cnn", "mobilenet-v2", "minilm"} <= set(model_names())
    assert "mobilenet-v2" in BUILDERS


def test_mobilenet_v2_is_an_inverted_residual_network_with_a_width_multiplier() -> None:
    import torch
    from torch import nn

    net = mobilenet_v2.network(0.5).eval()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert any(c.groups == c.in_channels > 1 for c in convs)  # depthwise
    assert any(isinstance(m, nn.ReLU6) for m in net.modules())
    assert any(getattr(m, "residual", False) for m in net.modules())
    with torch.no_grad():
        assert net(torch.zeros(2, *mobilenet_v2.INPUT_SHAPE[1:])).shape == (2, 10)
    params = [sum(p.numel() for p in mobilenet_v2.network(w).parameters()) for w in (0.35, 0.5, 1.0)]
    assert params == sorted(params) and params[0] < params[2]
    assert [mobilenet_v2.divisible_by_8(c) for c in (4.0, 12.0, 16.0, 20.0)] == [8, 16, 16, 24]


@pytest.mark.slow
def test_mobilenet_v2_trains_quickly_to_a_useful_accuracy(mobilenet: ModelBundle) -> None:
    record = json.loads((mobilenet.onnx_path.parent / "training.json").read_text())
    assert record["eval_top1_torch"] >= 0.90
    assert record["train_seconds"] < 180  # ~35 s on an idle 2-core machine; a guard against a 5x slip
    calib, evaluation = np.load(mobilenet.calib_npz), np.load(mobilenet.eval_npz)
    assert calib["x"].shape == (200, 1, 96, 96) and calib["x"].dtype == np.float32
    assert evaluation["x"].shape == (360, 1, 96, 96) and evaluation["y"].dtype == np.int64


@pytest.mark.slow
def test_mobilenet_v2_torch_source_rebuilds_the_onnx_model(mobilenet: ModelBundle) -> None:
    import torch

    source = mobilenet.torch_source
    assert source is not None and (source.builder, source.width) == ("mobilenet-v2", 0.5)
    assert source.input_shape == (1, 1, 96, 96)
    assert np.load(source.train_npz)["x"].shape[1:] == (1, 96, 96)
    x = np.load(mobilenet.eval_npz)["x"][:8]
    with torch.no_grad():
        torch_logits = load_module(source)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(mobilenet.onnx_path, {"input": x}), torch_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_mobilenet_v2_fp32_variant_keeps_the_trained_accuracy(mobilenet: ModelBundle, tmp_path: Path) -> None:
    assert compress(mobilenet, "fp32", tmp_path).accuracy >= 0.90


@pytest.mark.slow
def test_minilm_is_a_cosine_scored_encoder_with_token_inputs(minilm_bundle: ModelBundle) -> None:
    assert minilm_bundle.metric == "cosine" and minilm_bundle.torch_source is None
    evaluation = np.load(minilm_bundle.eval_npz)
    assert evaluation["input_ids"].shape == evaluation["attention_mask"].shape == (64, 32)
    assert evaluation["input_ids"].dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(evaluation["reference"], axis=1), 1.0, atol=1e-5)
    assert np.load(minilm_bundle.calib_npz)["input_ids"].shape == (128, 32)
    record = json.loads((minilm_bundle.onnx_path.parent / "export.json").read_text())
    assert record["onnx_vs_torch_cosine"]["min"] >= 0.9999


@pytest.mark.slow
def test_minilm_onnx_matches_sentence_transformers_on_new_sentences(minilm_bundle: ModelBundle) -> None:
    texts = [*minilm.sentences(6, seed=7), "Short.", "A much longer sentence " * 12]  # the last is truncated
    with minilm._offline_and_quiet():
        reference = minilm.load_sentence_transformer(minilm.weights_dir()).encode(texts, convert_to_numpy=True)
    tokens = minilm.tokenize(texts)
    embeddings = _run(minilm_bundle.onnx_path, tokens)
    # Truncation to 32 tokens changes the long sentence's meaning for PyTorch (256 tokens) only there.
    assert row_cosines(embeddings[:-1], reference[:-1]).min() >= 0.9999
    assert tokens["attention_mask"][-1].all() and tokens["attention_mask"][-2].sum() == 4  # [CLS] short . [SEP]


@pytest.mark.slow
def test_minilm_fp32_variant_scores_cosine_one(minilm_bundle: ModelBundle, tmp_path: Path) -> None:
    assert compress(minilm_bundle, "fp32", tmp_path).accuracy >= 0.9999


@pytest.mark.slow
def test_cosine_metric_needs_the_reference_embeddings(minilm_bundle: ModelBundle, tmp_path: Path) -> None:
    arrays = dict(np.load(minilm_bundle.eval_npz))
    del arrays["reference"]
    np.savez(tmp_path / "eval.npz", **arrays)
    with pytest.raises(EvalDataError, match=r"has no array 'reference'; it needs the fp32 model's embeddings"):
        embedding_cosine(minilm_bundle.onnx_path, tmp_path / "eval.npz")


@pytest.mark.slow
def test_a_users_torch_module_goes_through_the_recipes(tmp_path: Path) -> None:
    import torch

    digits = get_model("digits-cnn", tmp_path / "models")  # a trained module, as a user would bring one
    module = load_module(digits.torch_source)
    bundle = bundle_from_torch(module, torch.zeros(1, 1, 8, 8), "my-cnn", tmp_path, digits.calib_npz,
                               digits.eval_npz)
    assert bundle.onnx_path.parent.name.startswith("my-cnn-")
    fp32, int8 = compress(bundle, "fp32", tmp_path), compress(bundle, "int8-dynamic", tmp_path)
    assert fp32.accuracy >= 0.97 and abs(fp32.accuracy - int8.accuracy) <= 0.01
    again = bundle_from_torch(module, torch.zeros(1, 1, 8, 8), "my-cnn", tmp_path)
    assert again.onnx_path == bundle.onnx_path and again.calib_npz is None  # same weights, same file
    assert module.training is False


def test_a_module_the_exporter_cannot_take_fails_naming_the_step(tmp_path: Path) -> None:
    import torch

    class Spectrum(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft2(x).abs()

    with pytest.raises(BadModelError, match=r"export to ONNX failed for Spectrum: .*fft.*opset 17"):
        bundle_from_torch(Spectrum(), torch.zeros(1, 4, 4), "spectrum", tmp_path)
    with pytest.raises(BadModelError, match=r"model name '\.\./x' must be letters"):
        bundle_from_torch(Spectrum(), torch.zeros(1, 4, 4), "../x", tmp_path)
    assert not (tmp_path / "torch-models").exists()
