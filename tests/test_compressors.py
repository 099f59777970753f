"""The recipes on the real digits-cnn model with the real ONNX Runtime: sizes, accuracy, caching, errors.

The recipes run once per module, from an empty working directory, so one test
can check that nothing was written there.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.errors import BadModelError, CalibrationDataError, EvalDataError
from edgefarm.compressors.evaluate import top1_accuracy
from edgefarm.compressors.models import ModelBundle, bundle_from_file, get_model
from edgefarm.compressors.recipes import (
    RECIPES,
    RecipeParamsError,
    UnknownRecipeError,
    Variant,
    compress,
    recipe_names,
)

INT8_DEFAULTS = {"activation_type": "uint8", "weight_type": "int8", "reduce_range": "yes"}  # int8-static's
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    # The same directory as in test_models.py: whichever module runs first trains.
    return get_model("digits-cnn", tmp_path_factory.getbasetemp() / "digits-cnn-cache")


@pytest.fixture(scope="module")
def working_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty current directory for every compression in this module."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        yield cwd


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("variant-cache")


@pytest.fixture(scope="module")
def variants(digits: ModelBundle, cache: Path, working_dir: Path) -> dict[str, Variant]:
    """Every recipe, and int8-static once per calibration method, keyed "recipe" or "recipe/method"."""
    made = {recipe: compress(digits, recipe, cache) for recipe in ("fp32", "fp16", "int8-dynamic")}
    for method in CALIBRATION_METHODS:
        made[f"int8-static/{method}"] = compress(digits, "int8-static", cache, {"calibration": method})
    return made


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": x})
    return logits


def _entries(cache_dir: Path) -> list[str]:
    variants_dir = cache_dir / "variants"
    return sorted(p.name for p in variants_dir.iterdir()) if variants_dir.exists() else []


def test_recipe_names_follow_the_registry() -> None:
    assert recipe_names()[:4] == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    assert recipe_names() == list(RECIPES)


def test_every_variant_runs_on_float32_input_and_keeps_its_metadata(
    variants: dict[str, Variant], digits: ModelBundle
) -> None:
    x = np.load(digits.eval_npz)["x"][:7]
    for key, variant in variants.items():
        assert _logits(variant.path, x).shape == (7, 10), key
        assert variant.model == "digits-cnn" and variant.recipe == key.split("/")[0]
        assert variant.size_bytes == variant.path.stat().st_size
        assert variant.sha256 == sha256_file(variant.path)
        assert variant.duration_s >= 0.0 and 0.0 <= variant.accuracy <= 1.0


def test_fp32_is_the_model_unchanged(variants: dict[str, Variant], digits: ModelBundle) -> None:
    assert variants["fp32"].sha256 == sha256_file(digits.onnx_path)
    assert variants["fp32"].accuracy == top1_accuracy(digits.onnx_path, digits.eval_npz) >= 0.97


def test_int8_static_is_under_30_percent_of_fp32_within_1_point(variants: dict[str, Variant]) -> None:
    fp32, int8 = variants["fp32"], variants["int8-static/minmax"]
    assert int8.size_bytes <= 0.30 * fp32.size_bytes
    assert abs(int8.accuracy - fp32.accuracy) <= 0.01
    assert int8.params == {"calibration": "minmax", **INT8_DEFAULTS}  # the defaults, filled in


def test_int8_dynamic_shrinks_the_model_and_keeps_accuracy(variants: dict[str, Variant]) -> None:
    fp32, int8 = variants["fp32"], variants["int8-dynamic"]
    assert int8.size_bytes <= 0.30 * fp32.size_bytes
    assert abs(int8.accuracy - fp32.accuracy) <= 0.01


def test_fp16_halves_the_file_and_stays_close_to_fp32(variants: dict[str, Variant], digits: ModelBundle) -> None:
    x = np.load(digits.eval_npz)["x"]
    fp32_logits, fp16_logits = _logits(variants["fp32"].path, x), _logits(variants["fp16"].path, x)
    assert fp16_logits.dtype == np.float32  # keep_io_types: callers feed and read float32
    np.testing.assert_allclose(fp16_logits, fp32_logits, atol=0.05 * np.abs(fp32_logits).max())
    assert (fp16_logits.argmax(1) == fp32_logits.argmax(1)).mean() >= 0.99
    assert variants["fp16"].size_bytes <= 0.55 * variants["fp32"].size_bytes


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_each_calibration_method_makes_a_working_model(variants: dict[str, Variant], method: str) -> None:
    variant = variants[f"int8-static/{method}"]
    assert variant.params == {"calibration": method, **INT8_DEFAULTS}
    assert abs(variant.accuracy - variants["fp32"].accuracy) <= 0.01
    assert variant.size_bytes <= 0.30 * variants["fp32"].size_bytes


def test_each_recipe_and_method_has_its_own_cache_entry(variants: dict[str, Variant], cache: Path) -> None:
    assert len({v.path.parent for v in variants.values()}) == len(variants) == len(_entries(cache))


def test_nothing_is_written_to_the_working_directory(variants: dict[str, Variant], working_dir: Path) -> None:
    assert list(working_dir.iterdir()) == []


def test_a_cache_hit_does_no_work(variants: dict[str, Variant], digits: ModelBundle, cache: Path) -> None:
    calls: list[tuple[str, float]] = []
    for key, variant in variants.items():
        params = {"calibration": key.split("/")[1]} if "/" in key else None
        started = time.perf_counter()
        again = compress(digits, variant.recipe, cache, params, progress=lambda *call: calls.append(call))
        assert time.perf_counter() - started < 0.5
        assert again == variant  # same sha256, and the original duration and accuracy
    assert calls == []
    assert len(_entries(cache)) == len(variants)


def test_default_params_share_the_cache_entry(variants: dict[str, Variant], digits: ModelBundle, cache: Path) -> None:
    assert compress(digits, "int8-static", cache, {}) == variants["int8-static/minmax"]


def test_the_record_beside_the_artifact_describes_it(variants: dict[str, Variant], digits: ModelBundle) -> None:
    variant = variants["int8-static/entropy"]
    record = json.loads((variant.path.parent / "variant.json").read_text())
    assert record["sha256"] == variant.sha256 and record["params"] == {"calibration": "entropy", **INT8_DEFAULTS}
    assert record["inputs"]["model_sha256"] == sha256_file(digits.onnx_path)
    assert record["inputs"]["calib_sha256"] == sha256_file(digits.calib_npz)
    assert set(record["versions"]) == {"onnx", "onnxruntime", "onnxconverter-common"}
    assert sorted(p.name for p in variant.path.parent.iterdir()) == ["model.onnx", "variant.json"]


def test_a_damaged_cache_entry_is_rebuilt(digits: ModelBundle, tmp_path: Path) -> None:
    first = compress(digits, "fp16", tmp_path)
    first.path.write_bytes(first.path.read_bytes()[:100])  # e.g. a disk that filled up later
    again = compress(digits, "fp16", tmp_path)
    assert again.sha256 == first.sha256 == sha256_file(again.path)


def test_an_interrupted_compression_leaves_nothing(digits: ModelBundle, tmp_path: Path) -> None:
    def interrupt(phase: str, fraction: float) -> None:
        if phase == "calibrate":
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-calibration

    with pytest.raises(KeyboardInterrupt):
        compress(digits, "int8-static", tmp_path, {"calibration": "percentile"}, interrupt)
    assert _entries(tmp_path) == []


def test_a_variant_without_eval_data_has_no_accuracy(digits: ModelBundle, tmp_path: Path) -> None:
    variant = compress(replace(digits, eval_npz=None), "fp16", tmp_path)
    assert variant.accuracy is None


def test_an_unknown_recipe_lists_the_valid_ones(digits: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(UnknownRecipeError, match="unknown recipe 'int4'; valid recipes: fp32, fp16, int8-dyn"):
        compress(digits, "int4", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("recipe", "params", "message"),
    [
        ("int8-static", {"calibration": "kl"}, r"int8-static: calibration='kl' is not one of minmax, entropy"),
        ("int8-static", {"method": "entropy"}, r"has no parameter method; it takes calibration \(minmax\|"),
        ("fp16", {"calibration": "minmax"}, r"recipe fp16 has no parameter calibration; it takes no param"),
    ],
)
def test_bad_params_name_the_valid_choices(
    digits: ModelBundle, tmp_path: Path, recipe: str, params: dict[str, str], message: str
) -> None:
    with pytest.raises(RecipeParamsError, match=message):
        compress(digits, recipe, tmp_path, params)
    assert list(tmp_path.iterdir()) == []


def _bad_calibration(digits: ModelBundle, tmp_path: Path, **arrays: np.ndarray) -> ModelBundle:
    path = tmp_path / "calib.npz"
    np.savez(path, **arrays)
    return bundle_from_file(digits.onnx_path, calib_npz=path, eval_npz=digits.eval_npz)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((20, 64), np.float32)}, r"'x' .* has shape \[20, 64\], but model input 'input' takes "
                                                r"float32\[batch, 1, 8, 8\]; reshape"),
        ({"x": np.zeros((20, 1, 8, 8))}, r"'x' .* is float64, but model input 'input' takes float32.*astype"),
        ({"x": np.zeros((20, 1, 4, 4), np.float32)}, r"has shape \[20, 1, 4, 4\]"),
        ({"images": np.zeros((20, 1, 8, 8), np.float32)}, r"has no array 'input' or x \(it has \['images'\]\)"),
        ({"x": np.zeros((0, 1, 8, 8), np.float32)}, r"same, non-zero number of samples"),
    ],
    ids=["flat", "float64", "wrong-size", "misnamed", "empty"],
)
def test_bad_calibration_data_fails_cleanly(
    digits: ModelBundle, tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    bundle = _bad_calibration(digits, tmp_path, **arrays)
    with pytest.raises(CalibrationDataError, match=r"recipe int8-static: .*" + message) as raised:
        compress(bundle, "int8-static", tmp_path / "cache")
    assert "\n" not in str(raised.value)
    assert _entries(tmp_path / "cache") == []  # nothing half-written, not even a staging directory


def test_missing_calibration_data_names_recipe_and_path(digits: ModelBundle, tmp_path: Path) -> None:
    no_data = replace(digits, calib_npz=None)
    with pytest.raises(CalibrationDataError, match=r"recipe int8-static: the model has no calibration data"):
        compress(no_data, "int8-static", tmp_path)
    gone = replace(digits, calib_npz=tmp_path / "gone.npz")
    with pytest.raises(CalibrationDataError, match=r"calibration data .*gone\.npz does not exist"):
        compress(gone, "int8-static", tmp_path)
    not_npz = tmp_path / "calib.npz"
    not_npz.write_text("x,y\n")
    with pytest.raises(CalibrationDataError, match=r"calib\.npz is not an \.npz archive"):
        compress(replace(digits, calib_npz=not_npz), "int8-static", tmp_path)
    assert _entries(tmp_path) == []


def test_bad_eval_labels_fail_cleanly(digits: ModelBundle, tmp_path: Path) -> None:
    eval_npz = tmp_path / "eval.npz"
    np.savez(eval_npz, x=np.zeros((5, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(EvalDataError, match=r"'y' of int64\[4\]; it needs integer labels y\[5\]"):
        compress(replace(digits, eval_npz=eval_npz), "fp16", tmp_path)
    assert _entries(tmp_path) == []


def test_a_deleted_model_file_is_reported(digits: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(BadModelError, match=r"model file .*gone\.onnx of digits-cnn does not exist"):
        compress(replace(digits, onnx_path=tmp_path / "gone.onnx"), "fp32", tmp_path)


def test_progress_is_reported_by_phase_and_never_printed(
    digits: ModelBundle, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, float]] = []
    compress(digits, "int8-static", tmp_path, {"calibration": "entropy"}, lambda *call: calls.append(call))
    phases = list(dict.fromkeys(phase for phase, _ in calls))
    assert phases == ["prepare", "calibrate", "quantize", "evaluate"]
    assert all(0.0 <= fraction <= 1.0 for _, fraction in calls) and calls[-1] == ("evaluate", 1.0)
    assert capfd.readouterr() == ("", "")  # ORT's entropy calibrator prints unless silenced
