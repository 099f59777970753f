"""The ONNX Runtime backend against the real onnxruntime: engine cache, EP choice and fallback, bad input.

Behaviour on an EP that is not here (documented in agent/backends/onnxruntime.py):
- not built into this onnxruntime (CUDA on the CPU-only wheel): BackendUnavailableError, the job fails
  as bad input naming the EPs that are available;
- built in but unable to start (ORT drops it silently): the job runs and Result.provider says
  "CPUExecutionProvider (fallback from CUDAExecutionProvider)".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.models import mlp_model
from edgefarm.agent.backends import onnxruntime as ort_backend
from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError
from edgefarm.agent.engine_cache import EngineCache, EngineKey
from edgefarm.agent.worker import run_in_worker
from edgefarm.protos import agent_pb2 as pb

CUDA_EP = "CUDAExecutionProvider"
CUDA_BUILT_IN = CUDA_EP in ort.get_available_providers()
REAL_SESSION = ort.InferenceSession


def conv_bn_model(path: Path, layers: int = 3, channels: int = 8) -> Path:
    """Conv + BatchNormalization + Relu blocks: ORT's optimizer fuses each block into one node."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "input"
    for i in range(layers):
        inits += [numpy_helper.from_array((rng.standard_normal((channels, channels, 3, 3)) * 0.1).astype(np.float32),
                                          f"w{i}")]
        inits += [numpy_helper.from_array(rng.random(channels, dtype=np.float32) + 0.5, f"{p}{i}") for p in "sbmv"]
        nodes += [helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", [f"c{i}", f"s{i}", f"b{i}", f"m{i}", f"v{i}"], [f"n{i}"]),
                  helper.make_node("Relu", [f"n{i}"], [f"r{i}"])]
        prev = f"r{i}"
    shape = [1, channels, 16, 16]
    graph = helper.make_graph(nodes, "conv_bn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(mlp_model(tmp_path_factory.mktemp("m") / "mlp.onnx"))


@pytest.fixture()
def conv_bn(tmp_path: Path) -> str:
    return str(conv_bn_model(tmp_path / "conv_bn.onnx"))


def _spec() -> pb.BenchmarkSpec:
    return pb.BenchmarkSpec(job_id="t", backend="onnxruntime", threads=1,
                            warmup=pb.WarmupPolicy(min_iterations=2, min_seconds=0.01),
                            measure=pb.MeasurePolicy(min_iterations=10, min_seconds=0.02))


def _final(events) -> pb.BenchmarkEvent:
    return [e for e in events if e.WhichOneof("event") in ("result", "failure")][-1]


def test_second_job_loads_the_cached_engine_and_builds_nothing(mlp: str, tmp_path: Path) -> None:
    engines = str(tmp_path / "engines")
    first = _final(run_in_worker(_spec(), mlp, None, timeout_s=60, engine_cache_dir=engines)).result
    second = _final(run_in_worker(_spec(), mlp, None, timeout_s=60, engine_cache_dir=engines)).result
    assert (first.engine_cache_hit, second.engine_cache_hit) == (False, True)
    assert first.engine_build_ms > 0 and second.engine_build_ms == 0
    assert first.provider == second.provider == "CPUExecutionProvider"


def test_without_a_cache_folder_every_job_builds(mlp: str) -> None:
    result = _final(run_in_worker(_spec(), mlp, None, timeout_s=60)).result
    assert not result.engine_cache_hit and result.engine_build_ms > 0


def test_a_hit_runs_the_graph_optimized_ahead_of_time(conv_bn: str, tmp_path: Path) -> None:
    options = BackendOptions(threads=1, engine_cache_dir=str(tmp_path / "engines"))
    feeds = {"input": np.random.default_rng(1).random((1, 8, 16, 16), dtype=np.float32)}
    miss = ort_backend.load(conv_bn, options)
    expected = miss.run(feeds)[0]
    hit = ort_backend.load(conv_bn, options)
    assert (miss.cache_hit, hit.cache_hit, hit.build_ms) == (False, True, 0.0)
    cached = EngineCache(tmp_path / "engines").lookup(_key(conv_bn, options))
    assert hit.model_path == str(cached)
    # Conv + BN + Relu fused in the saved file: the hit had nothing left to optimize.
    assert len(onnx.load(str(cached)).graph.node) < len(onnx.load(conv_bn).graph.node)
    np.testing.assert_allclose(hit.run(feeds)[0], expected, rtol=1e-5, atol=1e-6)


def _key(path: str, options: BackendOptions) -> EngineKey:
    return ort_backend.engine_key(ort.__version__, path, ort_backend.CPU_EP, options)


def test_an_unreadable_cache_entry_is_rebuilt(conv_bn: str, tmp_path: Path) -> None:
    options = BackendOptions(threads=1, engine_cache_dir=str(tmp_path / "engines"))
    EngineCache(tmp_path / "engines").write_bytes(_key(conv_bn, options), b"not an onnx model")
    engine = ort_backend.load(conv_bn, options)
    assert not engine.cache_hit and engine.build_ms > 0
    assert ort_backend.load(conv_bn, options).cache_hit


def test_threads_and_batch_size_share_one_cache_entry(conv_bn: str, tmp_path: Path) -> None:
    cache_dir = str(tmp_path / "engines")
    ort_backend.load(conv_bn, BackendOptions(threads=1, engine_cache_dir=cache_dir))
    assert ort_backend.load(conv_bn, BackendOptions(threads=2, batch_size=4, engine_cache_dir=cache_dir)).cache_hit


@pytest.mark.skipif(CUDA_BUILT_IN, reason="this onnxruntime has the CUDA EP built in")
def test_an_ep_not_built_in_is_unavailable_naming_those_that_are(mlp: str) -> None:
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider is not available.*CPUExecutionProvider"):
        ort_backend.load(mlp, BackendOptions(execution_provider=CUDA_EP))
    spec = _spec()
    spec.execution_provider = CUDA_EP
    failure = _final(run_in_worker(spec, mlp, None, timeout_s=60)).failure
    assert failure.kind == pb.Failure.BAD_INPUT and "available: " in failure.message


class _SessionThatDropsTheEp:
    """Real ORT underneath; reports what ORT does when an EP fails to start: only the CPU left."""

    def __init__(self, path: str, sess_options: object, providers: list) -> None:
        self._session = REAL_SESSION(path, sess_options=sess_options, providers=[ort_backend.CPU_EP])

    def get_providers(self) -> list[str]:
        return [ort_backend.CPU_EP]

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


@pytest.fixture()
def cuda_ep_that_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, ort_backend.CPU_EP])
    monkeypatch.setattr(ort, "InferenceSession", _SessionThatDropsTheEp)


@pytest.mark.usefixtures("cuda_ep_that_cannot_start")
def test_a_silent_fallback_is_reported_and_not_cached(conv_bn: str, tmp_path: Path) -> None:
    options = BackendOptions(execution_provider=CUDA_EP, engine_cache_dir=str(tmp_path / "engines"))
    engine = ort_backend.load(conv_bn, options)
    assert engine.provider == "CPUExecutionProvider (fallback from CUDAExecutionProvider)"
    assert engine.run({"input": np.zeros((1, 8, 16, 16), np.float32)})[0].shape == (1, 8, 16, 16)
    assert [p.name for p in (tmp_path / "engines").iterdir()] == []  # a CPU graph is no CUDA engine


@pytest.mark.parametrize(("wanted", "ran", "report"), [
    ("CPUExecutionProvider", ["CPUExecutionProvider"], "CPUExecutionProvider"),
    (CUDA_EP, [CUDA_EP, "CPUExecutionProvider"], CUDA_EP),
    (CUDA_EP, ["CPUExecutionProvider"], "CPUExecutionProvider (fallback from CUDAExecutionProvider)"),
    ("TensorrtExecutionProvider", [CUDA_EP, "CPUExecutionProvider"],
     "CUDAExecutionProvider (fallback from TensorrtExecutionProvider)"),
])
def test_provider_report(wanted: str, ran: list[str], report: str) -> None:
    assert ort_backend.provider_report(wanted, ran) == report


def test_tensorrt_ep_options_carry_precision_dla_and_cache_folder() -> None:
    options = BackendOptions(precision="fp16", dla_core=1)
    assert ort_backend.ep_options("TensorrtExecutionProvider", options, "/cache/x.d") == {
        "trt_fp16_enable": "True", "trt_int8_enable": "False", "trt_dla_enable": "True", "trt_dla_core": "1",
        "trt_engine_cache_enable": "True", "trt_engine_cache_path": "/cache/x.d"}
    assert ort_backend.ep_options("OpenVINOExecutionProvider", options, "/c") == {"cache_dir": "/c"}
    assert ort_backend.ep_options(CUDA_EP, options, "/c") == {}


def test_tensorrt_ep_builds_one_profile_at_the_jobs_shapes() -> None:
    options = BackendOptions(input_shapes=(("images", (1, 3, 640, 640)), ("sr", ())))
    settings = ort_backend.ep_options("TensorrtExecutionProvider", options, "")
    assert settings["trt_profile_min_shapes"] == settings["trt_profile_opt_shapes"] == \
        settings["trt_profile_max_shapes"] == "images:1x3x640x640"
    assert "trt_profile_min_shapes" not in ort_backend.ep_options("TensorrtExecutionProvider", BackendOptions(), "")


@pytest.mark.parametrize(("options", "message"), [
    (BackendOptions(sparsity=True), "sparsity: settings of the 'tensorrt' backend"),
    (BackendOptions(cuda_graph=True, calibration_path="x.npz"), "cuda_graph, calibration_path"),
    (BackendOptions(precision="fp16"), "runs the model at its own precision"),
    (BackendOptions(dla_core=0), "dla_core needs TensorrtExecutionProvider"),
    (BackendOptions(execution_provider="TensorrtExecutionProvider", precision="fp8"), "valid: fp32, fp16, int8"),
])
def test_settings_onnxruntime_would_ignore_are_refused(mlp: str, options: BackendOptions, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        ort_backend.load(mlp, options)


def _tflite_file(path: Path) -> Path:
    # A TFLite flatbuffer: root offset, then the "TFL3" file identifier at bytes 4..8.
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return path


def test_a_tflite_model_is_bad_input(tmp_path: Path) -> None:
    tflite = str(_tflite_file(tmp_path / "model.tflite"))
    with pytest.raises(BadInputError, match="'litert' backend"):
        ort_backend.load(tflite, BackendOptions())
    failure = _final(run_in_worker(_spec(), tflite, None, timeout_s=60)).failure
    assert failure.kind == pb.Failure.BAD_INPUT and "TFLite" in failure.message
