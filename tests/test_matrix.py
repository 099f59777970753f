"""The nightly matrix says what each model is fed; a farm run measures at exactly those shapes."""
import sqlite3
import subprocess
import sys

import pytest

from edgefarm.controller.config.matrix import MatrixError, ModelFeed, load_matrix
from tests import user_models
from tests.farm_fixtures import devices_yaml, local_agents

MATRIX = """models:
  - digits-cnn
  - model: detector.onnx
    shapes: {images: 1x3x64x64}
    inputs: data/frames.npz
recipes: [fp32]
targets: [{device: board-a}]
"""


def test_models_take_shapes_and_inputs_relative_to_the_matrix(tmp_path):
    (tmp_path / "nightly.yaml").write_text(MATRIX)
    matrix = load_matrix(tmp_path / "nightly.yaml")
    detector = str(tmp_path / "detector.onnx")
    assert matrix.models == ("digits-cnn", detector)
    assert matrix.feed_of(detector) == ModelFeed((("images", (1, 3, 64, 64)),), str(tmp_path / "data/frames.npz"))
    assert matrix.feed_of("digits-cnn") == ModelFeed()


@pytest.mark.parametrize(("models", "message"), [
    ("  - model: d.onnx\n    shapes: {images: 1x3xHx64}\n", "nightly.yaml:3: shapes: images:1x3xHx64: dims"),
    ("  - model: d.onnx\n    shape: {images: 1x3}\n", "nightly.yaml:3: unknown key 'shape'; valid keys: model, shapes"),
    ("  - shapes: {images: 1x3}\n", "model"),
    ("  - model: d.onnx\n    shapes: {images: [1, 3]}\n", "shapes: images must be dims like 1x3x640x640, got a list"),
])
def test_a_bad_model_entry_names_file_and_line(tmp_path, models, message):
    (tmp_path / "nightly.yaml").write_text(f"models:\n{models}recipes: [fp32]\ntargets: [{{device: a}}]\n")
    with pytest.raises(MatrixError, match=message.replace("[", "\\[")):
        load_matrix(tmp_path / "nightly.yaml")


@pytest.mark.parametrize("key", ["min_seconds", "warmup_seconds", "timeout_seconds", "min_iterations"])
def test_a_zero_measuring_setting_is_refused_not_silently_the_board_default(tmp_path, key):
    (tmp_path / "nightly.yaml").write_text(f"models: [m.onnx]\nrecipes: [fp32]\ntargets: [{{device: a}}]\n"
                                           f"measure: {{{key}: 0}}\n")
    with pytest.raises(MatrixError, match=rf"nightly.yaml:4: measure.{key} must be > 0, got 0 \(0 would make the "
                                          r"board fall back to its own default\)"):
        load_matrix(tmp_path / "nightly.yaml")


@pytest.mark.slow
def test_a_farm_night_measures_a_dynamic_model_at_its_matrix_shape_or_refuses_it(tmp_path):
    user_models.detector(tmp_path)
    with local_agents(tmp_path, 1) as agents:
        devices_yaml(tmp_path / "devices.yaml", agents, ["board-a"])
        (tmp_path / "nightly.yaml").write_text(MATRIX.replace("  - digits-cnn\n", "").replace(
            "    inputs: data/frames.npz\n", ""))
        night = _nightly(tmp_path)
        assert night.returncode == 0, night.stdout + night.stderr
        with sqlite3.connect(tmp_path / "results.sqlite") as con:
            (shapes,) = con.execute("SELECT input_shapes FROM results").fetchone()
        assert shapes == "images:1x3x64x64"
        (tmp_path / "nightly.yaml").write_text(MATRIX.replace("  - digits-cnn\n", "").replace(
            "    shapes: {images: 1x3x64x64}\n    inputs: data/frames.npz\n", ""))
        refused = _nightly(tmp_path)
    assert refused.returncode == 2
    assert "input 'images' has dynamic dims [batch, 3, height, width]: give them with --shape" in refused.stderr


def _nightly(work):
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", "nightly",
                           "--matrix", str(work / "nightly.yaml"),
                           "--devices", str(work / "devices.yaml"), "--db", str(work / "results.sqlite"),
                           "--cache-dir", str(work / "cache"), "--out", str(work / "out")],
                          capture_output=True, text=True, timeout=600)
