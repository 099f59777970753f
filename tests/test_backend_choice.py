"""One backend rule for the planner, the farm, `edgefarm run`, the canary and nightly keys, and the
bugs it closes: a LiteRT-only Coral/Pi board's health check, an .onnx job offered to LiteRT-only
boards of a pool, a suspect re-run landing on another board, and a baseline from another board."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from edgefarm.controller.agents.canary import canary_backend, health_check
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import BenchmarkResult, DeviceInfo, Fingerprint, LatencyStats, RuntimeInfo
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.execution.farm_run import _pinned, planned_format
from edgefarm.controller.nightly.regression import Outcome, RegressionPolicy
from edgefarm.controller.nightly.run import _confirm_reruns, _first_pass
from edgefarm.controller.planning.backends import NoBackendError, choose_backend, runtime_refusal
from edgefarm.controller.planning.scheduler import PlanError, PlannedJob, TargetRef, expand
from edgefarm.controller.results.store import JobRecord, ResultStore, VariantRecord


@pytest.mark.parametrize(("capabilities", "fmt", "requested", "chosen"), [
    (("onnxruntime", "litert"), ".onnx", None, "onnxruntime"),
    (("tensorrt",), ".onnx", None, "tensorrt"),                  # a Jetson without ONNX Runtime
    (("onnxruntime", "tensorrt"), ".onnx", "tensorrt", "tensorrt"),
    (("litert",), ".tflite", None, "litert"),
    (("onnxruntime", "openvino"), ".onnx", None, "onnxruntime"),  # OpenVINO reads ONNX, after the ONNX runtimes
    (("openvino",), ".onnx", None, "openvino"),                  # an x86 box with OpenVINO only
    (("onnxruntime", "openvino"), ".onnx", "openvino", "openvino"),   # --backend openvino
    (("openvino", "executorch"), ".ovir", None, "openvino"),
    (("openvino", "executorch"), ".pte", None, "executorch"),
])
def test_the_backend_follows_the_board_and_the_artifact(capabilities, fmt, requested, chosen):
    assert choose_backend(capabilities, fmt, requested) == chosen


@pytest.mark.parametrize(("capabilities", "fmt", "requested", "message"), [
    (("litert",), ".onnx", None, r"\.onnx files need onnxruntime or tensorrt or openvino; the board has litert"),
    (("onnxruntime",), ".pte", None, r"\.pte files need executorch; the board has onnxruntime"),
    (("onnxruntime", "openvino"), ".pte", "openvino", r"backend openvino does not run \.pte files "
                                                      r"\(it runs \.onnx, \.ovir\)"),
    (("onnxruntime",), ".tflite", None, r"\.tflite files need litert; the board has onnxruntime"),
    (("onnxruntime",), ".onnx", "tensorrt", r"the board has no tensorrt \(it has onnxruntime\)"),
    (("litert", "onnxruntime"), ".onnx", "litert", r"backend litert does not run \.onnx files \(it runs \.tflite\)"),
])
def test_no_fitting_backend_is_refused_naming_what_the_board_has(capabilities, fmt, requested, message):
    with pytest.raises(NoBackendError, match=message):
        choose_backend(capabilities, fmt, requested)


BOARDS = {"x86-1": {"pool": "edge"}, "coral-1": {"pool": "edge"}, "coral-2": {"pool": "edge"}}
BACKENDS = {"x86-1": ("onnxruntime",), "coral-1": ("litert",), "coral-2": ("litert",)}


def _format(model: str, recipe: str) -> str:
    return ".tflite" if recipe == "tflite-int8" else ".onnx"


def test_a_pool_offers_each_job_only_to_boards_that_can_run_its_artifact():
    jobs = expand(["m"], ["fp32", "tflite-int8"], [TargetRef(pool="edge")], BOARDS, {"edge": {"pool": "edge"}},
                  BACKENDS, _format)
    assert {job.recipe: (job.candidates, job.artifact_format) for job in jobs} == {
        "fp32": (("x86-1",), ".onnx"), "tflite-int8": (("coral-1", "coral-2"), ".tflite")}


def test_a_target_with_no_board_for_the_artifact_is_refused_before_any_work():
    corals = {name: tags for name, tags in BOARDS.items() if name.startswith("coral")}
    with pytest.raises(PlanError, match=r"pool:edge has no board with a backend for \.onnx files "
                                        r"\(coral-1: litert; coral-2: litert\)"):
        expand(["m"], ["fp32"], [TargetRef(pool="edge")], corals, {"edge": {"pool": "edge"}}, BACKENDS, _format)


def test_a_recipe_names_the_format_it_ships():
    assert planned_format("digits-cnn", "int8-static") == ".onnx"
    assert planned_format("digits-cnn", "tflite-int8") == ".tflite"
    assert planned_format("detector.tflite", "as-is") == ".tflite"
    assert planned_format("digits-cnn", "et-int8") == ".pte"
    assert planned_format("digits-cnn", "ov-int8") == ".ovir"
    assert planned_format("detector.xml", "as-is") == ".ovir"   # an IR ships as one .ovir bundle
    assert planned_format("detector.pte", "as-is") == ".pte"


def test_a_runtime_the_board_lacks_is_refused_with_its_agents_reason():
    info = DeviceInfo(runtimes=(RuntimeInfo("onnxruntime", "1.32.0"),),
                      missing_runtimes=(("executorch", "no ExecuTorch Python runtime exists for Python 3.8"),))
    assert runtime_refusal("jetson-01", info, "onnxruntime") == ""
    assert runtime_refusal("jetson-01", info, "executorch") == (
        "jetson-01 has no executorch runtime: no ExecuTorch Python runtime exists for Python 3.8; nothing was "
        "uploaded (the agent runs onnxruntime)")
    # An agent older than the missing-runtimes list still lists what it has
    assert "its agent does not list it" in runtime_refusal("x86-01", DeviceInfo(runtimes=info.runtimes), "openvino")
    assert runtime_refusal("x86-01", None, "openvino") == ""               # no Describe: the agent decides
    assert runtime_refusal("x86-01", info, "simulated") == ""               # scale tests: never listed


def test_the_canary_uses_a_backend_the_board_has():
    assert canary_backend(("onnxruntime", "litert")) == (".onnx", "onnxruntime")
    assert canary_backend(("litert",)) == (".tflite", "litert")
    assert canary_backend(("tensorrt",)) == (".onnx", "tensorrt")
    with pytest.raises(NoBackendError):
        canary_backend(("simulated",))


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    with LocalAgent(tmp_path_factory.mktemp("agent")) as local:
        yield local


def test_a_litert_only_board_passes_its_health_check_with_the_tflite_canary(agent):
    """Before: the canary always asked for onnxruntime, so a Coral/Pi board stayed quarantined forever."""
    assert asyncio.run(health_check(_board("coral-1", agent.address, "litert"))) == (True, "ok")
    assert asyncio.run(health_check(_board("x86-1", agent.address, "onnxruntime"))) == (True, "ok")


def test_a_board_with_no_canary_backend_fails_its_check_saying_why(agent):
    ok, why = asyncio.run(health_check(_board("sim-1", agent.address, "simulated")))
    assert not ok and why.startswith("no canary runs on sim-1: ")


# --- nightly: nights matched by what was planned, re-runs pinned to the suspect's board ------------

def _night(store: ResultStore, kind: str, device: str, scale: float, target: str = "pool:x86") -> str:
    run_id = store.new_run("farm matrix.yaml", kind)
    store.add_variant(run_id, VariantRecord("m", "fp32", {}, "a" * 64, 1, None, 0.0))
    job = JobRecord(f"{run_id}-job", run_id, "m", "fp32", device, "onnxruntime", "a" * 64)
    store.add_job(job, target=target)
    samples = tuple(int(1_000_000 * scale + (i % 7) * 1_000) for i in range(500))
    store.add_result(job, BenchmarkResult(job.id, "onnxruntime", "CPU", samples, LatencyStats(count=500), 1000.0,
                                          environment=Fingerprint(cpu_governor="performance")))
    return run_id


@dataclass
class _Matrix:
    regression: RegressionPolicy


@dataclass
class _Started:
    run_id: str


class FakeFarm:
    """Plans one pool job over two boards; `start` records where re-runs were pinned."""

    def __init__(self, store: ResultStore, rerun_scale: float) -> None:
        self.store, self.rerun_scale, self.pins = store, rerun_scale, None
        self.matrix = _Matrix(RegressionPolicy(min_effect=0.05))
        self.planned = [PlannedJob("m", "fp32", "pool:x86", ("x86-02", "x86-03"))]

    def start(self, kind: str, only: dict[str, str]) -> _Started:
        self.pins = only
        (device,) = {_pinned(self.planned[0], only[self.planned[0].key]).candidates[0]}
        return _Started(_night(self.store, kind, device, self.rerun_scale))


def test_a_pool_job_on_another_board_than_its_baseline_is_incomparable_not_new(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    base = _night(store, "nightly", "x86-02", 1.0)
    tonight = _night(store, "nightly", "x86-03", 1.0)
    (verdict,) = _first_pass(store, base, tonight, FakeFarm(store, 1.0))
    assert verdict.outcome is Outcome.INCOMPARABLE
    assert "board 'x86-02' -> 'x86-03'" in verdict.reason


def test_a_suspect_is_re_run_on_its_own_board(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    base = _night(store, "nightly", "x86-03", 1.0)
    tonight = _night(store, "nightly", "x86-03", 1.3)
    farm = FakeFarm(store, 1.3)
    (first,) = _first_pass(store, base, tonight, farm)
    assert first.outcome is Outcome.SUSPECT
    (confirmed,) = _confirm_reruns(store, base, tonight, [first], farm)
    assert farm.pins == {"m|fp32|pool:x86": "x86-03"}
    assert confirmed.outcome is Outcome.REGRESSED and confirmed.reason.startswith("confirmed by re-run")


def test_a_pin_outside_the_jobs_candidates_is_refused():
    with pytest.raises(PlanError, match="board x86-09 is not among its candidates x86-02, x86-03"):
        _pinned(PlannedJob("m", "fp32", "pool:x86", ("x86-02", "x86-03")), "x86-09")


def test_an_unpinned_job_keeps_its_pool():
    job = PlannedJob("m", "fp32", "pool:x86", ("x86-02", "x86-03"))
    assert _pinned(job, None) == job


def _board(name: str, address: str, backend: str) -> Device:
    host, _, port = address.rpartition(":")
    return Device(name, host, int(port), {}, (backend,))
