"""The model registry, the digits-cnn model and checks on a user's own ONNX file.

Real training, real ONNX files; the trained model is cached under the session's
base temp directory, so the whole test run trains it once.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgefarm.compressors.evaluate import top1_accuracy
from edgefarm.compressors.models import (
    MODELS,
    BadModelError,
    ModelBundle,
    UnknownModelError,
    bundle_from_file,
    digits_cnn,
    get_model,
    model_names,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same directory as in test_compressors.py: whichever module runs first trains.
    return tmp_path_factory.getbasetemp() / "digits-cnn-cache"


@pytest.fixture(scope="session")
def digits(model_cache: Path) -> ModelBundle:
    return get_model("digits-cnn", model_cache)


def test_registry_names_every_model_module() -> None:
    modules = {p.stem.replace("_", "-") for p in (REPO / "compressors" / "models").glob("*.py")}
    from edgefarm.compressors.models import mobilenet_v2

    own_modules = modules - {"--init--", "bundle", "onnx-file", "torch-builders", "torch-module"}
    assert set(model_names()) == own_modules | set(mobilenet_v2.ARCHITECTURES)  # both sizes live in one module
    assert model_names() == sorted(MODELS)


def test_unknown_model_lists_the_valid_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match=r"unknown model 'resnet-9000'; valid models: digits-cnn"):
        get_model("resnet-9000", tmp_path)
    assert not any(tmp_path.iterdir())


def test_digits_cnn_has_the_promised_interface(digits: ModelBundle) -> None:
    model = onnx.load(str(digits.onnx_path))
    onnx.checker.check_model(model)
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims, graph_output.name) == ("input", ["batch", 1, 8, 8], "logits")
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx")} == {17}
    assert (digits.name, digits.metric) == ("digits-cnn", "top1")


def test_digits_cnn_data_is_a_held_out_split(digits: ModelBundle) -> None:
    x_train, y_train, x_eval, y_eval = digits_cnn.load_split()
    calib, evaluation = np.load(digits.calib_npz), np.load(digits.eval_npz)
    assert len(x_train) + len(x_eval) == 1797  # one permutation of load_digits, cut in two
    np.testing.assert_array_equal(calib["x"], x_train[:200])
    np.testing.assert_array_equal(evaluation["x"], x_eval)
    np.testing.assert_array_equal(evaluation["y"], y_eval)
    for data in (calib, evaluation):
        assert (data["x"].dtype, data["y"].dtype) == (np.float32, np.int64)
        assert data["x"].shape[1:] == (1, 8, 8) and 0.0 <= data["x"].min() <= data["x"].max() <= 1.0


def test_digits_cnn_is_accurate_and_weight_dominated(digits: ModelBundle) -> None:
    record = json.loads((digits.onnx_path.parent / "training.json").read_text())
    assert 80_000 <= record["parameters"] <= 150_000
    # Weights dominate the file, so int8 can shrink it about 4x.
    assert digits.onnx_path.stat().st_size < 4 * record["parameters"] * 1.02
    assert top1_accuracy(digits.onnx_path, digits.eval_npz) >= 0.97


def test_cached_model_loads_in_milliseconds_without_torch(digits: ModelBundle, model_cache: Path) -> None:
    # A fresh interpreter: this one already imported torch to train.
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from edgefarm.compressors.models import get_model
        started = time.perf_counter()
        bundle = get_model("digits-cnn", Path({str(model_cache)!r}))
        print(time.perf_counter() - started, "torch" in sys.modules, bundle.onnx_path)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    seconds, torch_imported, path = out.stdout.split()
    assert float(seconds) < 0.05 and torch_imported == "False" and Path(path) == digits.onnx_path


def test_interrupted_training_leaves_no_cache_entry(tmp_path: Path) -> None:
    def interrupt(phase: str, fraction: float) -> None:
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the first epoch

    with pytest.raises(KeyboardInterrupt):
        get_model("digits-cnn", tmp_path, interrupt)
    assert list((tmp_path / "models").iterdir()) == []


def test_training_leaves_torch_settings_as_they_were() -> None:
    import torch

    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    with digits_cnn._deterministic_torch(torch):
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        torch.rand(3)
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng_state)


@pytest.mark.slow
def test_training_is_deterministic(digits: ModelBundle, tmp_path: Path) -> None:
    again = get_model("digits-cnn", tmp_path)
    assert again.onnx_path.read_bytes() == digits.onnx_path.read_bytes()
    assert again.calib_npz.read_bytes() == digits.calib_npz.read_bytes()


def test_a_valid_user_file_becomes_a_bundle(digits: ModelBundle, tmp_path: Path) -> None:
    own = tmp_path / "my-net.onnx"
    own.write_bytes(digits.onnx_path.read_bytes())
    bundle = bundle_from_file(own, eval_npz=digits.eval_npz)
    assert bundle == ModelBundle("my-net", own, None, digits.eval_npz, "top1")


def _first_half(path: Path) -> bytes:
    return path.read_bytes()[: path.stat().st_size // 2]


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (lambda d, p: None, r"model file .*nothing\.onnx does not exist; check the path"),
        (lambda d, p: p.mkdir(), r"model path .* is not a file; pass the \.onnx file itself"),
        (lambda d, p: p.write_bytes(b""), r"model file .* is empty; re-export or re-copy it"),
        (lambda d, p: p.write_text("label,pixel0\n3,0.5\n"), r"is not an ONNX model .*export it to ONNX"),
        (lambda d, p: p.write_bytes(d.calib_npz.read_bytes()), r"is not an ONNX model"),
        (lambda d, p: p.write_bytes(_first_half(d.onnx_path)), r"looks truncated or corrupted .*re-copy it"),
    ],
    ids=["missing", "directory", "empty", "text", "npz", "truncated"],
)
def test_a_bad_user_file_is_refused_with_one_clear_line(
    digits: ModelBundle, tmp_path: Path, make_file: Callable[[ModelBundle, Path], object], message: str
) -> None:
    path = tmp_path / "nothing.onnx"
    make_file(digits, path)
    with pytest.raises(BadModelError, match=message) as raised:
        bundle_from_file(path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_a_graph_that_fails_the_checker_is_refused(tmp_path: Path) -> None:
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [], [])  # "x" is never defined
    path = tmp_path / "broken.onnx"
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(BadModelError, match=r"broken\.onnx is not a valid ONNX model: .*re-export"):
        bundle_from_file(path)
