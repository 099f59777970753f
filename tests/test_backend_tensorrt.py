"""The TensorRT backend.

Three layers of evidence, kept apart:
- plain-data logic (precision/flag mapping, engine keys, TensorRT 8-vs-10 API choice, shapes, bindings):
  runs everywhere;
- the engine's plumbing (buffers, binding order, H2D/enqueue/D2H, events, CUDA graph replay) against
  *fake* TensorRT and CUDA objects: proves the wiring, never a measurement;
- real builds and runs, marked `gpu`: skipped with the reason where TensorRT or a GPU is missing.
"""
from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from benchmarks.models import mlp_model
from edgefarm.agent import cuda_device
from edgefarm.agent.backends import tensorrt as trt_backend
from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec
from edgefarm.agent.backends.tensorrt import IoTensor
from edgefarm.agent.worker import run_in_worker
from edgefarm.protos import agent_pb2 as pb

# --- plain data -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "api"), [
    ("8.4.1.5", trt_backend.IO_BINDINGS),         # JetPack 5.0.2
    ("8.5.2.2", trt_backend.IO_TENSOR_ADDRESS),   # JetPack 5.1: first with set_tensor_address
    ("8.6.2.3", trt_backend.IO_TENSOR_ADDRESS),   # JetPack 6.0
    ("10.3.0.30", trt_backend.IO_TENSOR_ADDRESS),  # JetPack 6.1/6.2: binding API gone
    ("10.9.0", trt_backend.IO_TENSOR_ADDRESS),
])
def test_io_api_follows_the_tensorrt_version(version: str, api: str) -> None:
    assert trt_backend.io_api(version) == api


def test_tensorrt_before_8_is_unavailable() -> None:
    with pytest.raises(BackendUnavailableError, match="7.1.3 is too old"):
        trt_backend.io_api("7.1.3")


@pytest.mark.parametrize(("version", "explicit_flag", "pools"), [
    ("8.2.1", True, False), ("8.4.1", True, True), ("8.6.1", True, True), ("10.0.0b6", False, True),
])
def test_network_flag_and_workspace_api_follow_the_version(version: str, explicit_flag: bool, pools: bool) -> None:
    assert trt_backend.needs_explicit_batch_flag(version) is explicit_flag
    assert trt_backend.has_memory_pools(version) is pools


def test_parse_version_stops_at_a_non_numeric_part() -> None:
    assert trt_backend.parse_version("10.0.0b6") == (10, 0)
    assert trt_backend.parse_version("8.5.2.2") == (8, 5, 2, 2)


@pytest.mark.parametrize(("options", "precision", "flags"), [
    (BackendOptions(), "fp32", ()),
    (BackendOptions(precision="fp16"), "fp16", ("FP16",)),
    (BackendOptions(precision="int8"), "int8", ("INT8",)),
    (BackendOptions(precision="fp16", sparsity=True), "fp16", ("FP16", "SPARSE_WEIGHTS")),
    (BackendOptions(precision="int8", dla_core=1), "int8", ("INT8", "GPU_FALLBACK")),
])
def test_build_plan_maps_options_to_builder_flags(options: BackendOptions, precision: str, flags: tuple) -> None:
    plan = trt_backend.build_plan(options)
    assert (plan.precision, plan.builder_flags) == (precision, flags)


@pytest.mark.parametrize(("options", "message"), [
    (BackendOptions(precision="bf16"), "unknown TensorRT precision 'bf16'; valid: fp32, fp16, int8"),
    (BackendOptions(dla_core=0), "DLA has no fp32"),
    (BackendOptions(precision="fp16", calibration_path="c.npz"), "calibration_path is for precision int8"),
    (BackendOptions(batch_size=0), "batch_size must be >= 1"),
])
def test_build_plan_refuses_what_cannot_be_built(options: BackendOptions, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        trt_backend.build_plan(options)


@pytest.mark.parametrize(("options", "label"), [
    (BackendOptions(), "GPU fp32"),
    (BackendOptions(precision="fp16", sparsity=True, cuda_graph=True), "GPU fp16, sparse weights, CUDA graph"),
    (BackendOptions(precision="int8", dla_core=0), "DLA0 int8 (GPU fallback)"),
])
def test_provider_label_says_where_and_how_it_runs(options: BackendOptions, label: str) -> None:
    assert trt_backend.provider_label(trt_backend.build_plan(options)) == label


def _key(options: BackendOptions, gpu: str = "Orin", calibration: str = "") -> str:
    plan = trt_backend.build_plan(options)
    return trt_backend.engine_key("ab" * 32, plan, "8.5.2.2", gpu, "8.7", "R35.4.1", calibration).digest()


def test_engine_key_changes_with_every_build_setting() -> None:
    base = BackendOptions(precision="fp16")
    variants = [BackendOptions(precision="int8"), BackendOptions(precision="fp16", dla_core=0),
                BackendOptions(precision="fp16", sparsity=True), BackendOptions(precision="fp16", batch_size=8)]
    digests = {_key(base)} | {_key(v) for v in variants} | {_key(base, gpu="Xavier"), _key(base, calibration="cd")}
    assert len(digests) == len(variants) + 3


def test_cuda_graph_reuses_the_same_engine() -> None:
    assert _key(BackendOptions(cuda_graph=True)) == _key(BackendOptions())


def test_engine_key_names_runtime_gpu_and_l4t() -> None:
    plan = trt_backend.build_plan(BackendOptions(precision="fp16"))
    key = trt_backend.engine_key("ab" * 32, plan, "10.3.0", "Orin", "8.7", "R36.4.3", "")
    assert (key.backend, key.precision, key.runtime_version, key.gpu_name, key.compute_capability,
            key.l4t_release) == ("tensorrt", "fp16", "10.3.0", "Orin", "8.7", "R36.4.3")


@pytest.mark.parametrize(("shape", "batch", "expected"), [
    ((-1, 3, 224, 224), 8, (8, 3, 224, 224)),
    ((1, 64), 1, (1, 64)),
    ((4, 64), 4, (4, 64)),
    ((64,), 1, (64,)),
])
def test_run_shape_fills_the_dynamic_batch(shape: tuple, batch: int, expected: tuple) -> None:
    assert trt_backend.run_shape("x", shape, batch) == expected


@pytest.mark.parametrize(("shape", "batch", "message"), [
    ((-1, 3, -1, -1), 1, "input 'x' has dynamic dims \\[\\?, 3, \\?, \\?\\]: give them with --shape x:1x3x224x224"),
    ((1, 64), 8, "fixed shape \\[1, 64\\]; batch size 8 needs a model exported with a dynamic batch"),
])
def test_run_shape_refuses_what_one_profile_cannot_cover(shape: tuple, batch: int, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        trt_backend.run_shape("x", shape, batch)


def test_run_shape_takes_the_jobs_shape_for_every_dynamic_dim() -> None:
    assert trt_backend.run_shape("images", (-1, 3, -1, -1), 1, (2, 3, 640, 480)) == (2, 3, 640, 480)
    with pytest.raises(BadInputError, match="fixed at \\[\\?, 3, \\?, \\?\\]; the job asks for \\[1, 1, 64, 64\\]"):
        trt_backend.run_shape("images", (-1, 3, -1, -1), 1, (1, 1, 64, 64))


def test_the_jobs_shapes_pin_the_profile_and_key_the_engine() -> None:
    plan = trt_backend.build_plan(BackendOptions(input_shapes=(("images", (1, 3, 640, 640)),)))
    other = trt_backend.build_plan(BackendOptions(input_shapes=(("images", (1, 3, 320, 320)),)))
    keys = [trt_backend.engine_key("a" * 64, p, "10.3.0", "Orin", "8.7", "", "") for p in (plan, other)]
    assert keys[0] != keys[1]
    assert trt_backend.input_specs([IoTensor("images", True, (-1, 3, -1, -1), "float32")], plan) == \
        [TensorSpec("images", [1, 3, 640, 640], "float32")]


TENSORS = [IoTensor("input", True, (-1, 64), "float32"), IoTensor("mask", True, (-1, 64), "int32"),
           IoTensor("logits", False, (-1, 10), "float32")]


def test_input_specs_are_the_inputs_at_the_run_shape() -> None:
    plan = trt_backend.build_plan(BackendOptions(batch_size=4))
    assert trt_backend.input_specs(TENSORS, plan) == [TensorSpec("input", [4, 64], "float32"),
                                                     TensorSpec("mask", [4, 64], "int32")]


def test_bindings_list_follows_binding_order_not_the_mapping_order() -> None:
    assert trt_backend.bindings_list(TENSORS, {"logits": 30, "input": 10, "mask": 20}) == [10, 20, 30]
    with pytest.raises(ValueError, match="logits"):
        trt_backend.bindings_list(TENSORS, {"input": 10, "mask": 20})


def test_check_feeds_names_expected_and_given() -> None:
    specs = [TensorSpec("input", [2, 4], "float32")]
    trt_backend.check_feeds(specs, {"input": np.zeros((2, 4), np.float32)})
    with pytest.raises(BadInputError, match=r"expects \[2, 4\]:float32, given \[3, 4\]:float32"):
        trt_backend.check_feeds(specs, {"input": np.zeros((3, 4), np.float32)})
    with pytest.raises(BadInputError, match="float64"):
        trt_backend.check_feeds(specs, {"input": np.zeros((2, 4))})
    with pytest.raises(BadInputError, match="inputs expected"):
        trt_backend.check_feeds(specs, {"x": np.zeros((2, 4), np.float32)})


def test_calibration_batches_are_whole_batches_of_the_input_dtype() -> None:
    x = np.arange(10 * 3, dtype=np.float64).reshape(10, 3)
    batches = trt_backend.calibration_batches(x, (4, 3), "float32")
    assert [b.shape for b in batches] == [(4, 3), (4, 3)] and batches[0].dtype == np.float32
    np.testing.assert_array_equal(batches[1], x[4:8])
    with pytest.raises(BadInputError, match="samples of shape \\[3\\], the model's input takes \\[5\\]"):
        trt_backend.calibration_batches(x, (4, 5), "float32")
    with pytest.raises(BadInputError, match="fewer than one batch of 16"):
        trt_backend.calibration_batches(x, (16, 3), "float32")


def test_dla_cores_come_from_the_device_files(tmp_path: Path) -> None:
    for name in ("nvhost-nvdla0", "nvhost-nvdla1", "nvhost-ctrl-nvdla0", "nvhost-gpu"):
        (tmp_path / name).touch()
    assert trt_backend.dla_cores(str(tmp_path)) == [0, 1]


@pytest.mark.parametrize(("available", "graphs", "api"), [
    (["pycuda", "cuda-python"], False, "pycuda"),
    (["cuda-python"], False, "cuda-python"),
    (["pycuda", "cuda-python"], True, "cuda-python"),
])
def test_cuda_api_selection(available: list[str], graphs: bool, api: str) -> None:
    assert cuda_device.select_cuda_api(available, graphs) == api


@pytest.mark.parametrize(("available", "graphs", "message"), [
    ([], False, "install pycuda or cuda-python"),
    (["pycuda"], True, "CUDA graph capture needs it"),
])
def test_cuda_api_selection_says_what_to_install(available: list[str], graphs: bool, message: str) -> None:
    with pytest.raises(cuda_device.CudaUnavailableError, match=message):
        cuda_device.select_cuda_api(available, graphs)


def test_cuda_python_results_are_unwrapped_or_raised() -> None:
    ok, bad = SimpleNamespace(name="cudaSuccess"), SimpleNamespace(name="cudaErrorMemoryAllocation")
    assert cuda_device.unwrap((ok, 1234), ok, "cudaMalloc") == 1234
    assert cuda_device.unwrap((ok,), ok, "cudaFree") is None
    assert cuda_device.unwrap((ok, 1, 2), ok, "x") == (1, 2)
    with pytest.raises(cuda_device.CudaCallError, match="cudaMalloc failed: cudaErrorMemoryAllocation"):
        cuda_device.unwrap((bad, 0), ok, "cudaMalloc")
    assert cuda_device.c_string(b"Orin\x00\x00garbage") == "Orin"


# --- without TensorRT -----------------------------------------------------------------------------

TENSORRT_INSTALLED = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(TENSORRT_INSTALLED, reason="TensorRT is installed here")
def test_without_tensorrt_the_module_imports_and_reports_nothing() -> None:
    assert trt_backend.version() is None and trt_backend.providers() == []


@pytest.mark.skipif(TENSORRT_INSTALLED, reason="TensorRT is installed here")
def test_without_tensorrt_a_job_fails_as_unavailable(tmp_path: Path) -> None:
    model = str(mlp_model(tmp_path / "mlp.onnx"))
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        trt_backend.load(model, BackendOptions())
    spec = pb.BenchmarkSpec(job_id="t", backend="tensorrt")
    failure = [e for e in run_in_worker(spec, model, None, timeout_s=60)][-1].failure
    assert failure.kind == pb.Failure.BAD_INPUT and "TensorRT is not installed" in failure.message


# --- plumbing against fakes (wiring only, not a measurement) --------------------------------------


class FakeCuda:
    """Numpy 'device memory' keyed by address; events read the host clock."""

    api, name, compute_capability, stream_handle = "fake", "FakeGPU", "0.0", 7

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.graph: Callable[[], None] | None = None
        self.graph_launches = 0
        self.closed = False

    def alloc(self, nbytes: int) -> int:
        address = 0x1000 * (len(self.memory) + 1)
        self.memory[address] = np.zeros(nbytes, np.uint8)
        return address

    def pinned_empty(self, shape: Any, dtype: str) -> np.ndarray:
        return np.empty(tuple(shape), np.dtype(dtype))

    def to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        self.memory[device_ptr][:] = host.reshape(-1).view(np.uint8)

    def to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        host.reshape(-1).view(np.uint8)[:] = self.memory[device_ptr]

    def new_event(self) -> dict:
        return {}

    def record(self, event: dict) -> None:
        event["t"] = time.perf_counter_ns()

    def elapsed_ms(self, start: dict, end: dict) -> float:
        return (end["t"] - start["t"]) / 1e6

    def synchronize(self) -> None:
        pass

    def capture_graph(self, enqueue: Callable[[], None]) -> None:
        self.graph = enqueue

    def launch_graph(self) -> None:
        self.graph_launches += 1
        self.graph()

    def close(self) -> None:
        self.closed = True


class FakeTensorRT:
    """The slice of the `tensorrt` module the engine wrapper touches."""

    TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")

    def __init__(self, version: str) -> None:
        self.__version__ = version

    @staticmethod
    def nptype(dtype: str) -> type:
        return np.dtype(dtype).type


class FakeDoublingContext:
    """'Runs' output = 2 * input on the fake device, through either TensorRT I/O API."""

    def __init__(self, cuda: FakeCuda, names: list[str]) -> None:
        self.cuda, self.names, self.shapes, self.addresses = cuda, names, {}, {}
        self.enqueues = 0

    def _compute(self) -> bool:
        source = self.cuda.memory[self.addresses["input"]].view(np.float32)
        self.cuda.memory[self.addresses["output"]][:] = (source * 2).view(np.uint8)
        self.enqueues += 1
        return True

    # TensorRT 8.5+ / 10
    def set_input_shape(self, name: str, shape: tuple) -> None:
        self.shapes[name] = shape

    def get_tensor_shape(self, name: str) -> tuple:
        return self.shapes["input"]

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = address

    def execute_async_v3(self, stream_handle: int) -> bool:
        return self._compute()

    # TensorRT 8.0-8.4
    def set_binding_shape(self, index: int, shape: tuple) -> None:
        self.shapes[self.names[index]] = shape

    def get_binding_shape(self, index: int) -> tuple:
        return self.shapes["input"]

    def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
        self.addresses = dict(zip(self.names, bindings, strict=True))
        return self._compute()


class FakeEngine:
    names = ["input", "output"]

    def __init__(self, cuda: FakeCuda) -> None:
        self.context = FakeDoublingContext(cuda, self.names)
        self.num_io_tensors = self.num_bindings = 2

    def create_execution_context(self) -> FakeDoublingContext:
        return self.context

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_shape(self, name: str) -> tuple:
        return (-1, 16)

    def get_tensor_dtype(self, name: str) -> str:
        return "float32"

    get_binding_name = get_tensor_name

    def binding_is_input(self, index: int) -> bool:
        return index == 0

    def get_binding_shape(self, index: int) -> tuple:
        return (-1, 16)

    def get_binding_dtype(self, index: int) -> str:
        return "float32"

    def get_binding_index(self, name: str) -> int:
        return self.names.index(name)


def _fake_engine(version: str, **options: Any) -> tuple[trt_backend.TensorRTEngine, FakeCuda, FakeEngine]:
    cuda = FakeCuda()
    engine = FakeEngine(cuda)
    plan = trt_backend.build_plan(BackendOptions(batch_size=4, **options))
    loaded = trt_backend._Loaded(runtime=object(), engine=engine, build_ms=12.5, cache_hit=False)
    return trt_backend.TensorRTEngine(FakeTensorRT(version), cuda, loaded, plan), cuda, engine


@pytest.mark.parametrize("version", ["8.4.1", "10.3.0"])
def test_engine_moves_data_through_both_io_apis(version: str) -> None:
    engine, cuda, fake = _fake_engine(version)
    feeds = {"input": np.arange(64, dtype=np.float32).reshape(4, 16)}
    np.testing.assert_array_equal(engine.run(feeds)[0], feeds["input"] * 2)
    assert engine.inputs == [TensorSpec("input", [4, 16], "float32")]
    assert (engine.provider, engine.build_ms, engine.cache_hit, engine.compute_separable) == (
        "GPU fp32", 12.5, False, True)
    engine.close()
    assert cuda.closed


def test_run_timed_gives_compute_inside_host_time() -> None:
    engine, _, _ = _fake_engine("10.3.0")
    timing = engine.run_timed({"input": np.ones((4, 16), np.float32)})
    assert 0 <= timing.compute_ns <= timing.host_ns


def test_cuda_graph_is_captured_once_and_replayed() -> None:
    engine, cuda, fake = _fake_engine("10.3.0", cuda_graph=True)
    feeds = {"input": np.ones((4, 16), np.float32)}
    for _ in range(3):
        np.testing.assert_array_equal(engine.run(feeds)[0], feeds["input"] * 2)
    assert cuda.graph_launches == 3


def test_engine_refuses_feeds_of_another_shape() -> None:
    engine, _, _ = _fake_engine("8.4.1")
    with pytest.raises(BadInputError, match=r"expects \[4, 16\]:float32, given \[2, 16\]:float32"):
        engine.run({"input": np.ones((2, 16), np.float32)})


class FakeProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
        self.shapes[name] = (low, opt, high)


def _network(*shapes: tuple) -> SimpleNamespace:
    inputs = [SimpleNamespace(name=f"in{i}", shape=shape) for i, shape in enumerate(shapes)]
    return SimpleNamespace(num_inputs=len(inputs), get_input=inputs.__getitem__)


def test_profile_pins_a_dynamic_batch_and_is_left_out_for_static_models() -> None:
    profiles: list[FakeProfile] = []
    builder = SimpleNamespace(create_optimization_profile=lambda: profiles.append(FakeProfile()) or profiles[-1])
    config = SimpleNamespace(added=[], add_optimization_profile=lambda p: config.added.append(p))
    profile = trt_backend._add_profile(builder, config, _network((-1, 3, 8, 8), (1, 5)),
                                         trt_backend.build_plan(BackendOptions()))
    assert profile.shapes == {"in0": ((1, 3, 8, 8),) * 3} and config.added == [profile]
    assert trt_backend._add_profile(builder, config, _network((1, 3, 8, 8)),
                                    trt_backend.build_plan(BackendOptions())) is None


def _fake_trt_for_build(num_dla_cores: int) -> tuple[Any, Any, Any]:
    trt = SimpleNamespace(__version__="8.5.2", BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8",
                          SPARSE_WEIGHTS="SPARSE_WEIGHTS", GPU_FALLBACK="GPU_FALLBACK"),
                          DeviceType=SimpleNamespace(DLA="DLA"))
    config = SimpleNamespace(flags=[], set_flag=lambda flag: config.flags.append(flag))
    return trt, SimpleNamespace(num_DLA_cores=num_dla_cores), config


def test_configure_sets_flags_and_the_dla_core() -> None:
    trt, builder, config = _fake_trt_for_build(num_dla_cores=2)
    plan = trt_backend.build_plan(BackendOptions(precision="fp16", dla_core=1, sparsity=True))
    trt_backend._configure(trt, builder, config, plan)
    assert config.flags == ["FP16", "SPARSE_WEIGHTS", "GPU_FALLBACK"]
    assert (config.default_device_type, config.DLA_core) == ("DLA", 1)


def test_configure_refuses_a_dla_core_the_board_lacks() -> None:
    trt, builder, config = _fake_trt_for_build(num_dla_cores=0)
    plan = trt_backend.build_plan(BackendOptions(precision="int8", dla_core=0))
    with pytest.raises(BackendUnavailableError, match="DLA core 0 asked, this board has 0"):
        trt_backend._configure(trt, builder, config, plan)


def test_int8_on_a_float_model_without_calibration_is_refused() -> None:
    trt = SimpleNamespace(LayerType=SimpleNamespace(QUANTIZE="Q", DEQUANTIZE="DQ"))
    layers = [SimpleNamespace(type="MATRIX_MULTIPLY"), SimpleNamespace(type="ACTIVATION")]
    network = SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__)
    plan = trt_backend.build_plan(BackendOptions(precision="int8"))
    with pytest.raises(BadInputError, match="int8 needs a QDQ"):
        trt_backend._attach_int8(trt, SimpleNamespace(), network, FakeCuda(), plan, None)
    layers.append(SimpleNamespace(type="DQ"))
    network.num_layers = len(layers)
    assert trt_backend._attach_int8(trt, SimpleNamespace(), network, FakeCuda(), plan, None) is None


# --- real TensorRT on a GPU -----------------------------------------------------------------------


def _gpu_missing() -> str:
    if not TENSORRT_INSTALLED:
        return "the tensorrt Python package is not installed"
    try:
        cuda_device.open_cuda_device(need_graphs=False).close()
    except Exception as exc:  # no binding, no driver, no device: each says which
        return f"no usable CUDA device: {exc}"
    return ""


@pytest.fixture(scope="module")
def gpu() -> None:
    reason = _gpu_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(mlp_model(tmp_path_factory.mktemp("m") / "mlp.onnx", width=64, depth=2))


def _onnxruntime_reference(model: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from edgefarm.agent.backends import onnxruntime as ort_backend

    engine = ort_backend.load(model, BackendOptions())
    try:
        return engine.run(feeds)[0]
    finally:
        engine.close()


TOLERANCES = {"fp32": 1e-4, "fp16": 2e-2}


@pytest.mark.gpu
@pytest.mark.usefixtures("gpu")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_builds_runs_and_matches_onnxruntime_then_hits_the_cache(mlp: str, tmp_path: Path, precision: str) -> None:
    options = BackendOptions(precision=precision, batch_size=4, engine_cache_dir=str(tmp_path / "engines"))
    feeds = {"input": np.random.default_rng(0).random((4, 64), dtype=np.float32)}
    built = trt_backend.load(mlp, options)
    try:
        assert (built.cache_hit, built.build_ms > 0, built.provider) == (False, True, f"GPU {precision}")
        tolerance = TOLERANCES[precision]
        np.testing.assert_allclose(built.run(feeds)[0], _onnxruntime_reference(mlp, feeds), rtol=tolerance,
                                   atol=tolerance)
        timing = built.run_timed(feeds)
        assert 0 < timing.compute_ns <= timing.host_ns
    finally:
        built.close()
    cached = trt_backend.load(mlp, options)
    try:
        assert (cached.cache_hit, cached.build_ms) == (True, 0.0)
        np.testing.assert_allclose(cached.run(feeds)[0], _onnxruntime_reference(mlp, feeds), rtol=tolerance,
                                   atol=tolerance)
    finally:
        cached.close()


@pytest.mark.gpu
@pytest.mark.usefixtures("gpu")
def test_worker_jobs_report_build_then_cache_hit_and_separate_compute(mlp: str, tmp_path: Path) -> None:
    spec = pb.BenchmarkSpec(job_id="t", backend="tensorrt", precision="fp16", batch_size=2,
                            warmup=pb.WarmupPolicy(min_iterations=5, min_seconds=0.05),
                            measure=pb.MeasurePolicy(min_iterations=20, min_seconds=0.1))
    engines = str(tmp_path / "engines")
    results = [[e for e in run_in_worker(spec, mlp, None, timeout_s=300, engine_cache_dir=engines)][-1].result
               for _ in range(2)]
    assert [r.engine_cache_hit for r in results] == [False, True]
    assert results[0].engine_build_ms > 0 and results[1].engine_build_ms == 0
    for result in results:
        assert result.compute_separable and len(result.compute_samples_ns) == len(result.samples_ns)
        assert all(0 < c <= h for c, h in zip(result.compute_samples_ns, result.samples_ns, strict=True))


@pytest.mark.gpu
@pytest.mark.usefixtures("gpu")
def test_int8_from_a_calibration_set_builds_and_stays_close(mlp: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.random((64, 64), dtype=np.float32))
    options = BackendOptions(precision="int8", batch_size=8, calibration_path=str(tmp_path / "calib.npz"))
    feeds = {"input": rng.random((8, 64), dtype=np.float32)}
    engine = trt_backend.load(mlp, options)
    try:
        reference = _onnxruntime_reference(mlp, feeds)
        assert np.abs(engine.run(feeds)[0] - reference).max() < 0.1 * np.abs(reference).max() + 0.05
    finally:
        engine.close()


@pytest.mark.gpu
@pytest.mark.usefixtures("gpu")
def test_int8_float_model_without_calibration_is_bad_input(mlp: str) -> None:
    with pytest.raises(BadInputError, match="int8 needs a QDQ"):
        trt_backend.load(mlp, BackendOptions(precision="int8"))


@pytest.mark.gpu
@pytest.mark.usefixtures("gpu")
def test_cuda_graph_replays_the_same_results(mlp: str) -> None:
    if "cuda-python" not in cuda_device.available_cuda_apis():
        pytest.skip("CUDA graph capture needs cuda-python")
    feeds = {"input": np.random.default_rng(0).random((1, 64), dtype=np.float32)}
    engine = trt_backend.load(mlp, BackendOptions(cuda_graph=True))
    try:
        assert engine.provider == "GPU fp32, CUDA graph"
        np.testing.assert_allclose(engine.run(feeds)[0], _onnxruntime_reference(mlp, feeds), rtol=1e-4, atol=1e-4)
    finally:
        engine.close()

