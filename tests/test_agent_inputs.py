"""The agent runs each input at exactly the job's shape, on the job's data, and scores its outputs
against shipped fp32 references: real worker processes and ONNX Runtime on user-shaped models."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from edgefarm.agent.backends.base import BadInputError, TensorSpec
from edgefarm.agent.fidelity import compare_outputs
from edgefarm.agent.inputs import load_feeds
from edgefarm.agent.shapes import run_shape
from edgefarm.agent.worker import run_in_worker
from edgefarm.protos import agent_pb2 as pb
from tests import user_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("user-models")
    return {build.__name__: build(out) for build in (user_models.detector, user_models.stateful,
                                                      user_models.shared_symbol, user_models.two_input)}


def _spec(shapes: dict[str, tuple[int, ...]] | None = None, **kw) -> pb.BenchmarkSpec:
    spec = pb.BenchmarkSpec(job_id="t", backend="onnxruntime", threads=1,
                            warmup=pb.WarmupPolicy(min_iterations=2, min_seconds=0.01),
                            measure=pb.MeasurePolicy(min_iterations=5, min_seconds=0.05), **kw)
    spec.input_shapes.extend(pb.InputShape(name=n, dims=list(d)) for n, d in (shapes or {}).items())
    return spec


def _final(spec: pb.BenchmarkSpec, model, **paths) -> pb.BenchmarkEvent:
    return list(run_in_worker(spec, str(model), None, timeout_s=120, **paths))[-1]


def test_a_detector_runs_at_the_jobs_shape_and_says_so(models):
    result = _final(_spec({"images": (1, 3, 320, 320)}), models["detector"]).result
    assert [(s.name, list(s.dims)) for s in result.input_shapes] == [("images", [1, 3, 320, 320])]
    assert result.input_source == "synthetic" and result.input_samples == 1


def test_a_detector_without_shapes_is_refused_not_run_at_one_pixel(models):
    failure = _final(_spec(), models["detector"]).failure
    assert failure.kind == pb.Failure.BAD_INPUT
    assert failure.message == ("input 'images' has dynamic dims [batch, 3, height, width]: "
                               "give them with --shape images:1x3x224x224 (or shapes: in the nightly matrix)")


def test_a_shape_the_model_cannot_run_at_says_which_shape_failed(models):
    failure = _final(_spec({"images": (1, 3, 100, 100)}), models["detector"]).failure
    assert failure.kind == pb.Failure.BAD_INPUT
    assert "the model fails at images[1, 3, 100, 100] on synthetic inputs" in failure.message
    assert "Concat" in failure.message


def test_a_shape_for_an_input_the_model_lacks_is_refused(models):
    failure = _final(_spec({"image": (1, 3, 64, 64)}), models["detector"]).failure
    assert failure.message == "the job gives a shape for 'image', but the model's inputs are ['images']"


def test_synthetic_data_that_breaks_a_stateful_model_asks_for_real_inputs(models):
    failure = _final(_spec(), models["stateful"]).failure
    assert failure.kind == pb.Failure.BAD_INPUT
    assert ("give real values with --inputs FILE.npz holding 'input' float32[1, 512], "
            "'state' float32[1, 1, 64], 'sr' int64[]") in failure.message


def _vad_inputs(path, frames: int = 6):
    rng = np.random.default_rng(1)
    np.savez(path, input=rng.standard_normal((frames, 1, 512)).astype(np.float32),
             state=np.zeros((1, 1, 64), np.float32), sr=np.array(16000, np.int64))
    return path


def _fidelity_file(path, model, feeds: list[dict[str, np.ndarray]], scale: float = 1.0):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outputs = [session.run(None, feed) for feed in feeds]
    arrays = {f"input:{name}": np.stack([f[name] for f in feeds]) for name in feeds[0]}
    arrays.update({f"output:{i}": np.stack([o[i] * scale for o in outputs]) for i in range(len(outputs[0]))})
    np.savez(path, output_names=np.array([o.name for o in session.get_outputs()]), **arrays)
    return path


def test_a_stateful_model_cycles_through_the_users_frames_and_scores_fidelity(models, tmp_path):
    inputs = _vad_inputs(tmp_path / "frames.npz")
    feeds = load_feeds(str(inputs), [TensorSpec("input", [1, 512], "float32"),
                                     TensorSpec("state", [1, 1, 64], "float32"), TensorSpec("sr", [], "int64")],
                       {"input": (1, 512), "state": (1, 1, 64), "sr": ()})
    fidelity = _fidelity_file(tmp_path / "fidelity.npz", models["stateful"], feeds)
    spec = _spec(inputs_artifact_sha256="a" * 64)
    result = _final(spec, models["stateful"], inputs_path=str(inputs), fidelity_path=str(fidelity)).result
    assert result.input_source == "inputs:" + "a" * 64 and result.input_samples == 6
    assert [(s.name, list(s.dims)) for s in result.input_shapes] == [("input", [1, 512]), ("state", [1, 1, 64]),
                                                                     ("sr", [])]
    assert [f.name for f in result.fidelity] == ["prob", "state_out"]
    assert all(f.cosine > 0.999999 and f.samples == 6 for f in result.fidelity)


def test_device_fidelity_falls_when_the_board_computes_something_else(models, tmp_path):
    """References scaled by 1.1 stand in for a board whose kernels compute other numbers."""
    inputs = _vad_inputs(tmp_path / "frames.npz")
    specs = [TensorSpec("input", [1, 512], "float32"), TensorSpec("state", [1, 1, 64], "float32"),
             TensorSpec("sr", [], "int64")]
    feeds = load_feeds(str(inputs), specs, {"input": (1, 512), "state": (1, 1, 64), "sr": ()})
    fidelity = _fidelity_file(tmp_path / "fidelity.npz", models["stateful"], feeds, scale=1.1)
    result = _final(_spec(), models["stateful"], inputs_path=str(inputs), fidelity_path=str(fidelity)).result
    assert all(20.0 < f.snr_db < 21.0 and f.max_abs_error > 0 for f in result.fidelity)  # 20 log10(1/0.1)


def test_input_data_of_the_wrong_dtype_is_refused_on_the_board(models, tmp_path):
    path = tmp_path / "frames.npz"
    np.savez(path, input=np.zeros((1, 512), np.float64), state=np.zeros((1, 1, 64), np.float32),
             sr=np.array(16000, np.int64))
    failure = _final(_spec(), models["stateful"], inputs_path=str(path)).failure
    assert failure.kind == pb.Failure.BAD_INPUT
    assert failure.message == "input data 'input' is float64, the model takes float32; save it with .astype(np.float32)"


def test_two_inputs_sharing_a_symbol_run_at_the_jobs_shapes(models):
    shapes = {"input_ids": (2, 16), "attention_mask": (2, 16)}
    result = _final(_spec(shapes, batch_size=2), models["shared_symbol"]).result
    assert {s.name: list(s.dims) for s in result.input_shapes} == {"input_ids": [2, 16], "attention_mask": [2, 16]}
    assert result.batch_size == 2


def test_run_shape_rules():
    assert run_shape("x", (-1, 3), 4) == (4, 3)
    assert run_shape("x", (-1, 3, -1), 1, (1, 3, 7)) == (1, 3, 7)
    with pytest.raises(BadInputError, match="every dimension must be >= 1"):
        run_shape("x", (-1, 3), 1, (0, 3))
    with pytest.raises(BadInputError, match="has rank 2 \\[\\?, 3\\], the job asks for rank 1"):
        run_shape("x", (-1, 3), 1, (3,))


def test_fidelity_figures_are_exact_on_known_numbers():
    reference = [np.array([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)]
    same = compare_outputs("logits", reference, reference)
    assert same.cosine == 1.0 and same.snr_db == math.inf and same.top1_agreement == 1.0 and same.classifier
    noisy = compare_outputs("logits", [np.array([[1.0, 0.1, 0.0, 0.0, 0.0, 0.0]], np.float32)], reference)
    assert noisy.snr_db == pytest.approx(20.0, abs=1e-5) and noisy.max_abs_error == pytest.approx(0.1)
    swapped = compare_outputs("logits", [np.array([[0.0, 1.0, 0.5, 0.0, 0.0, 0.0]], np.float32)], reference)
    assert swapped.cosine == 0.0 and swapped.top1_agreement == 0.0 and swapped.top5_agreement == 1.0
    boxes = compare_outputs("boxes", [np.ones((1, 5, 4), np.float32)], [np.ones((1, 5, 4), np.float32)])
    assert not boxes.classifier and math.isnan(boxes.top1_agreement)
