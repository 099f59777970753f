"""Change points over stored nights: a real series (runs measured by a real local agent over gRPC,
stored as nights) with a 50 % step injected into its later nights is found by `edgefarm history`,
marked on the HTML trend, fails exactly the night that confirms it, and a short history says how
many nights it needs."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.models import mlp_model
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import BenchmarkResult, JobSpec, LatencyStats
from edgefarm.controller.nightly.changepoints import ChangePointPolicy, Night, change_points
from edgefarm.controller.nightly.history import (
    history_change_points,
    history_frame,
    newly_confirmed_slowdowns,
)
from edgefarm.controller.nightly.junit import junit_xml
from edgefarm.controller.results.store import JobRecord, ResultStore, VariantRecord

# The step is large against this VM's night-to-night noise (real runs here drift by up to ~10 % under
# load); how small a step the method finds at a given noise is C1's business in `make bench`.
NIGHTS, STEP_AT, STEP, FOUND = 10, 6, 1.5, 0.25


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> list[BenchmarkResult]:
    """NIGHTS real runs of one small model through a real local agent."""
    tmp = tmp_path_factory.mktemp("history-runs")
    model = mlp_model(tmp / "mlp.onnx", width=512, depth=4)
    with LocalAgent(tmp / "agent") as local:
        client = AgentClient("local", local.address)
        client.connect()
        sha = sha256_file(model)
        client.ensure_uploaded(model, sha)
        spec = JobSpec(job_id="", artifact_sha256=sha, backend="onnxruntime", threads=1, batch_size=1,
                       warmup_iterations=10, warmup_seconds=0.05, min_iterations=100, min_seconds=0.3)
        runs = [list(client.benchmark(spec))[-1] for _ in range(NIGHTS)]
        client.close()
    assert all(isinstance(run, BenchmarkResult) for run in runs)
    return runs


def _slowed(result: BenchmarkResult, factor: float) -> BenchmarkResult:
    """The same run with every sample `factor` times longer: an injected step, not a measured one."""
    samples = tuple(int(round(s * factor)) for s in result.samples_ns)
    lat = result.latency
    scaled = LatencyStats(lat.count, *(getattr(lat, name) * factor for name in (
        "min_ms", "max_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms")), lat.cv)
    return replace(result, samples_ns=samples, latency=scaled)


def _store_nights(db: Path, runs: list[BenchmarkResult], count: int) -> list[str]:
    store = ResultStore(db)
    run_ids = []
    for night, result in enumerate(runs[:count]):
        run_id = store.new_run("farm nightly.yaml", "nightly")
        store.add_variant(run_id, VariantRecord("mlp.onnx", "fp32", {}, "a" * 64, 1000, None, 0.1))
        job = JobRecord(f"job-{night}", run_id, "mlp.onnx", "fp32", "board-a", "onnxruntime", "a" * 64)
        store.add_job(job, target="board-a")
        store.add_result(job, _slowed(result, STEP) if night >= STEP_AT else result)
        store.finish_run(run_id, "done")
        store.set_verdict(run_id, "good")
        run_ids.append(run_id)
    store.close()
    return run_ids


def _edgefarm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", *args], capture_output=True, text=True,
                          timeout=120)


def test_history_finds_an_injected_step_in_a_real_series_and_marks_it(real_runs, tmp_path):
    run_ids = _store_nights(tmp_path / "r.sqlite", real_runs, NIGHTS)
    proc = _edgefarm("history", "--db", str(tmp_path / "r.sqlite"), "--json", "--html", str(tmp_path / "h.html"))
    assert proc.returncode == 0, proc.stderr
    # The injected step; the real nights' own noise may rarely add a small one elsewhere (C1-false-per-100).
    (point,) = [p for p in json.loads(proc.stdout) if abs(p["step"]) >= FOUND]
    assert point["run_id"] == run_ids[STEP_AT] and point["confirmed"]
    assert point["step"] == pytest.approx(STEP - 1, abs=0.15) and point["p_value"] < 0.01
    page = (tmp_path / "h.html").read_text()
    assert 'id="fig-trend"' in page and f"{point['step']:+.1%}" in page     # the dashed mark's label
    assert run_ids[STEP_AT] in page                                          # the change-point table


def test_a_step_fails_only_the_night_that_confirms_it(real_runs, tmp_path):
    policy = ChangePointPolicy()
    for nights in (STEP_AT + 2, STEP_AT + 3, STEP_AT + 4):
        db = tmp_path / f"n{nights}.sqlite"
        run_ids = _store_nights(db, real_runs, nights)
        store = ResultStore(db)
        trend = history_frame(store)
        store.close()
        stepped = [p for p in newly_confirmed_slowdowns(history_change_points(trend, policy), run_ids[-1], trend,
                                                        policy) if p.step >= FOUND]   # the injected one
        assert len(stepped) == (1 if nights - STEP_AT == policy.confirm_nights else 0), nights
    suite = ET.fromstring(junit_xml([], change_points=stepped or _points(real_runs)))
    (failure,) = suite.iter("failure")
    assert failure.get("type") == "change-point" and "confirmed by 3 nights" in failure.get("message")


def _points(runs: list[BenchmarkResult]):
    nights = [Night(f"run-{i}", float(i), r.latency.p50_ms * (STEP if i >= STEP_AT else 1))
              for i, r in enumerate(runs[:STEP_AT + 3])]
    return [p for p in change_points("mlp.onnx/fp32 on board-a (onnxruntime)", nights) if p.step >= FOUND]


def test_a_history_too_short_says_how_many_nights_it_needs(real_runs, tmp_path):
    _store_nights(tmp_path / "r.sqlite", real_runs, 3)
    proc = _edgefarm("history", "--db", str(tmp_path / "r.sqlite"))
    assert proc.returncode == 2
    assert "has at most 3 night(s) per benchmark; change points need at least 5" in proc.stderr


def test_steady_nights_have_no_threshold_sized_change_point(real_runs):
    nights = [Night(f"run-{i}", float(i), r.latency.p50_ms) for i, r in enumerate(real_runs)]
    assert not [p for p in change_points("steady", nights) if abs(p.step) >= FOUND]
    assert np.std([n.median_ms for n in nights]) > 0      # real nights, not identical copies
