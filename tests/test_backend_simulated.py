"""The simulated backend (scheduler and scale tests only): it sleeps what its artifact asks,
refuses anything else, and says it is simulated wherever a result could be read."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from benchmarks.models import mlp_model
from edgefarm.agent.backends import get_backend, simulated
from edgefarm.agent.backends.base import BackendOptions, BadInputError
from edgefarm.agent.describe import collect_runtimes
from edgefarm.agent.worker import run_in_worker
from edgefarm.controller.config.inventory import InventoryError, load_inventory
from edgefarm.controller.planning.backends import NoBackendError, artifact_format, choose_backend
from edgefarm.protos import agent_pb2 as pb


def test_run_sleeps_the_latency_its_artifact_asks_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = simulated.load(str(simulated.write_artifact(tmp_path / "sim.json", 20.0)), BackendOptions())
    slept: list[float] = []
    monkeypatch.setattr(simulated, "time", types.SimpleNamespace(sleep=slept.append))
    outputs = engine.run({"input": np.zeros(1, np.float32)})
    assert slept == [0.020]
    assert len(outputs) == 1 and engine.provider == "simulated (no real runtime)"
    assert (engine.build_ms, engine.cache_hit, engine.compute_separable) == (0.0, False, False)


@pytest.mark.parametrize(("content", "why"), [
    ("not json", "expected JSON"),
    ("[5.0]", "needs a number"),
    ('{"latency_ms": 5.0}', "needs a number"),
    ('{"simulated_latency_ms": "5"}', "needs a number"),
    ('{"simulated_latency_ms": true}', "needs a number"),
    ('{"simulated_latency_ms": NaN}', "needs a number"),
    ('{"simulated_latency_ms": -1}', "between 0 and"),
    ('{"simulated_latency_ms": 5000000}', "between 0 and"),
])
def test_anything_but_a_simulated_artifact_is_bad_input(tmp_path: Path, content: str, why: str) -> None:
    (tmp_path / "sim.json").write_text(content)
    with pytest.raises(BadInputError, match=why):
        simulated.load(str(tmp_path / "sim.json"), BackendOptions())


def test_a_real_model_is_not_a_simulated_artifact(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not a simulated-backend artifact"):
        simulated.load(str(mlp_model(tmp_path / "mlp.onnx")), BackendOptions())


def test_no_agent_lists_it_among_its_runtimes() -> None:
    assert get_backend("simulated") is simulated
    assert "simulated" not in {runtime.name for runtime in collect_runtimes()}


def test_a_job_result_says_it_is_simulated(tmp_path: Path) -> None:
    artifact = simulated.write_artifact(tmp_path / "sim.json", 5.0)
    spec = pb.BenchmarkSpec(job_id="sim", backend="simulated",
                            warmup=pb.WarmupPolicy(min_iterations=1, min_seconds=0.01),
                            measure=pb.MeasurePolicy(min_iterations=10, min_seconds=0.05))
    final = list(run_in_worker(spec, str(artifact), None, timeout_s=60))[-1]
    assert final.HasField("result"), final.failure.message
    assert (final.result.backend, final.result.provider) == ("simulated", "simulated (no real runtime)")
    assert final.result.latency.count >= 10 and final.result.latency.p50_ms >= 5.0


def test_devices_yaml_cannot_name_it(tmp_path: Path) -> None:
    (tmp_path / "devices.yaml").write_text("devices:\n  - name: sim-01\n    host: 127.0.0.1\n    port: 50051\n"
                                           "    backends: [simulated]\n")
    with pytest.raises(InventoryError, match="simulated"):
        load_inventory(tmp_path / "devices.yaml")


def test_the_farm_picks_it_only_for_a_json_artifact_on_a_simulated_device() -> None:
    assert choose_backend(("simulated",), artifact_format(Path("sim.json"))) == "simulated"
    with pytest.raises(NoBackendError, match=r"\.json files need simulated; the board has onnxruntime"):
        choose_backend(("onnxruntime",), ".json")
    with pytest.raises(NoBackendError,
                       match=r"\.onnx files need onnxruntime or tensorrt or openvino; the board has simulated"):
        choose_backend(("simulated",), ".onnx")
