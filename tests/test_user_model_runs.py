"""`edgefarm run` on models shaped like the ones users bring, as a user types it: real subprocesses,
a real local agent over gRPC, ONNX Runtime and LiteRT, a real SQLite file. Each model is measured at
the shape given, or refused in one line naming the input and the flag; never measured at a guess."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import user_models

pytestmark = pytest.mark.slow
_REFUSED = r"^edgefarm: (error: |.* failed \(bad-input\): )"
FAST = ["--warmup-seconds", "0.05", "--min-seconds", "0.2", "--min-iterations", "3"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("user-runs")
    models = root / "models"
    models.mkdir()
    for build in (user_models.detector, user_models.ocr, user_models.two_input, user_models.stateful,
                  user_models.shared_symbol):
        build(models)
    return root


def edgefarm(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", *args, "--db", str(work / "results.sqlite"),
                           "--cache-dir", str(work / "cache"), *FAST], capture_output=True, text=True, timeout=600)


def run_json(work: Path, model: str | Path, *args: str) -> list[dict]:
    proc = edgefarm(work, "run", str(model if isinstance(model, Path) else work / "models" / model), "--local",
                    "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["results"]


def refusal(work: Path, model: str | Path, *args: str) -> str:
    """The one error line of a run refused with exit code 2: by the controller before anything ran
    ("edgefarm: error: ..."), or by the board as bad input ("edgefarm: fp32 on local failed (bad-input): ...")."""
    proc = edgefarm(work, "run", str(model if isinstance(model, Path) else work / "models" / model), "--local", *args)
    lines = [line for line in proc.stderr.splitlines() if re.match(_REFUSED, line)]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return re.sub(_REFUSED, "", lines[0])


def stored_results(work: Path) -> int:
    with sqlite3.connect(work / "results.sqlite") as con:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def test_a_detector_is_measured_at_the_shape_given(work):
    (row,) = run_json(work, "detector.onnx", "--shape", "images:1x3x320x320")
    assert row["input_shapes"] == "images:1x3x320x320" and row["synthetic_inputs"] is True
    assert row["latency_count"] >= 3
    # No data of the user's: fidelity on the agent's synthetic inputs, and the row says so.
    assert row["fidelity_source"] == "synthetic inputs" and row["device_fidelity_cosine"] == pytest.approx(1.0)


def test_a_detector_without_a_shape_is_refused_before_anything_is_compressed(work):
    line = refusal(work, "detector.onnx", "--recipe", "int8-dynamic")
    assert line == ("input 'images' has dynamic dims [batch, 3, height, width]: "
                    "give them with --shape images:1x3x224x224")
    assert not list((work / "cache").glob("variants/int8-dynamic-*"))


def test_a_detector_at_a_size_its_neck_cannot_take_says_so(work):
    line = refusal(work, "detector.onnx", "--shape", "images:1x3x100x100")
    assert line.startswith("the model fails at images[1, 3, 100, 100] on synthetic inputs")
    assert "check --shape" in line


def test_an_ocr_model_with_a_dynamic_width(work):
    assert refusal(work, "ocr.onnx") == ("input 'x' has dynamic dims [1, 1, 32, width]: give them with "
                                         "--shape x:1x1x32x224")
    (row,) = run_json(work, "ocr.onnx", "--shape", "x:1x1x32x128")
    assert row["input_shapes"] == "x:1x1x32x128"


def test_two_inputs_with_the_users_data_report_fidelity_per_variant(work):
    rng = np.random.default_rng(0)
    data = work / "two_input.npz"
    np.savez(data, image=rng.random((4, 1, 3, 64, 64), dtype=np.float32),
             meta=rng.random((4, 1, 8), dtype=np.float32))
    rows = {r["variant"]: r for r in run_json(work, "two_input.onnx", "--inputs", str(data),
                                              "--recipe", "fp32", "--recipe", "int8-dynamic")}
    fp32, int8 = rows["fp32"], rows["int8-dynamic"]
    assert fp32["synthetic_inputs"] is False and fp32["input_shapes"] == "image:1x3x64x64 meta:1x8"
    assert fp32["fidelity_source"] == int8["fidelity_source"] == "inputs"
    assert fp32["fidelity_cosine"] == pytest.approx(1.0) and fp32["device_fidelity_cosine"] == pytest.approx(1.0)
    assert 0.9 < int8["fidelity_cosine"] < 1.0 and 0 < int8["fidelity_snr_db"] < 80
    # Same runtime and CPU on both sides here: the board's figures match the host's, and nothing is flagged.
    assert int8["device_fidelity_cosine"] == pytest.approx(int8["fidelity_cosine"], abs=1e-6)
    assert 0.0 <= int8["top1_agreement"] <= 1.0 and not int8["fidelity_flag"]


def test_a_stateful_model_runs_on_the_users_frames_and_reports_fidelity(work):
    line = refusal(work, "stateful.onnx")
    assert line.endswith("give real values with --inputs FILE.npz holding 'input' float32[1, 512], "
                         "'state' float32[1, 1, 64], 'sr' int64[]")
    frames = work / "frames.npz"
    np.savez(frames, input=np.random.default_rng(1).standard_normal((8, 1, 512)).astype(np.float32),
             state=np.zeros((1, 1, 64), np.float32), sr=np.array(16000, np.int64))
    rows = {r["variant"]: r for r in run_json(work, "stateful.onnx", "--inputs", str(frames),
                                              "--recipe", "fp32", "--recipe", "int8-dynamic")}
    assert rows["fp32"]["input_shapes"] == "input:1x512 state:1x1x64 sr:scalar"
    assert rows["fp32"]["device_fidelity_cosine"] == pytest.approx(1.0)
    assert 0.5 < rows["int8-dynamic"]["device_fidelity_cosine"] <= 1.0


def test_inputs_sharing_a_symbol_are_resolved_together_and_must_agree(work):
    (row,) = run_json(work, "shared_symbol.onnx", "--shape", "input_ids:1x32")
    assert row["input_shapes"] == "input_ids:1x32 attention_mask:1x32"
    line = refusal(work, "shared_symbol.onnx", "--shape", "input_ids:1x32", "--shape", "attention_mask:1x16")
    assert line == "symbolic dim 'seq' is 32 in 'input_ids' but 16 in 'attention_mask'; inputs that share it must agree"


def test_a_tflite_model_with_a_dynamic_signature(work, tflite_models):
    model = tflite_models / "dynamic_hw.tflite"
    line = refusal(work, model)
    assert "has dynamic dims [1, ?, ?, 3]: give them with --shape" in line
    name = line.split("'")[1]
    (row,) = run_json(work, model, "--shape", f"{name}:1x64x48x3")
    assert row["input_shapes"] == f"{name}:1x64x48x3" and row["backend"] == "litert"


def test_int8_static_calibrates_on_a_folder_of_images(work):
    folder = work / "calib-images"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    rows = run_json(work, "detector.onnx", "--shape", "images:1x3x64x64", "--recipe", "int8-static",
                    "--calib-data", str(folder), "--preprocess", "size=64x64,scale=1/255,layout=nchw,color=rgb")
    assert rows[0]["variant"] == "int8-static" and rows[0]["input_shapes"] == "images:1x3x64x64"
    assert 0.9 < rows[0]["fidelity_cosine"] <= 1.0  # against fp32, on the calibration images themselves
    assert rows[0]["fidelity_source"] == "calibration data"


def _bad_inputs(work: Path) -> dict[str, tuple[tuple[str, ...], str]]:
    data = work / "bad"
    data.mkdir(exist_ok=True)
    np.savez(data / "no_sr.npz", input=np.zeros((1, 512), np.float32), state=np.zeros((1, 1, 64), np.float32))
    np.savez(data / "f64.npz", input=np.zeros((1, 512)), state=np.zeros((1, 1, 64), np.float32),
             sr=np.array(16000, np.int64))
    np.savez(data / "short.npz", input=np.zeros((1, 256), np.float32), state=np.zeros((1, 1, 64), np.float32),
             sr=np.array(16000, np.int64))
    np.savez(data / "calib.npz", x=np.zeros((4, 1, 64, 64), np.float32))  # one channel, the model takes 3
    (data / "junk-images").mkdir(exist_ok=True)
    (data / "junk-images" / "notes.txt").write_text("not an image")
    det, vad = ("detector.onnx",), ("stateful.onnx",)
    preprocess = ("--preprocess", "size=64x64")
    return {
        "unknown input": (det + ("--shape", "image:1x3x64x64"), "--shape names input 'image', but detector has "
                                                                  "inputs 'images' float32[batch, 3, height, width]"),
        "wrong rank": (det + ("--shape", "images:1x3x64"), "has rank 4 [batch, 3, height, width], not 3"),
        "fixed dim contradicted": (det + ("--shape", "images:1x1x64x64"), "dimension 1 of 'images' is fixed at 3"),
        "non-numeric dims": (det + ("--shape", "images:1x3xHxW"), "dims '1x3xHxW' are not whole numbers"),
        "zero dim": (det + ("--shape", "images:1x3x0x64"), "a dimension of 0 is empty"),
        "npz missing an input": (vad + ("--inputs", str(data / "no_sr.npz")), "no array 'sr'"),
        "wrong dtype": (vad + ("--inputs", str(data / "f64.npz")), "is float64, input 'input' takes float32"),
        "wrong shape": (vad + ("--inputs", str(data / "short.npz")), "dimension 1 of 'input' is fixed at 512"),
        "calibration data that does not fit": (det + ("--shape", "images:1x3x64x64", "--recipe", "int8-static",
                                                      "--calib-data", str(data / "calib.npz")), "calib.npz"),
        "image folder with nothing to decode": (det + ("--shape", "images:1x3x64x64", "--recipe", "int8-static",
                                                       "--calib-data", str(data / "junk-images")) + preprocess,
                                                "no decodable image"),
    }


def test_each_bad_input_is_one_clear_line_exit_2_and_loses_nothing(work):
    run_json(work, "two_input.onnx")  # something stored that a bad run must not lose
    before = stored_results(work)
    for case, (args, needle) in _bad_inputs(work).items():
        line = refusal(work, *args)
        assert needle in line, f"{case}: {line}"
    assert stored_results(work) == before
