"""The results store v2 on SQLite and on a real PostgreSQL server: records in, the same records out,
every statistic a column SQL can read, the previous release's databases migrated with identical
figures, and one team store shared by runs made from different machines or directories."""
from __future__ import annotations

import json
import math
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from edgefarm.controller.agents import wire
from edgefarm.controller.agents.records import (
    BenchmarkResult,
    DeviceInfo,
    Fingerprint,
    JobSpec,
    LatencyStats,
    OutputFidelity,
    PowerSummary,
    RuntimeInfo,
)
from edgefarm.controller.reports import write_csv
from edgefarm.controller.results import schema
from edgefarm.controller.results.frame import results_frame
from edgefarm.controller.results.liveness import ABANDONED_AFTER_S, RunHeartbeat
from edgefarm.controller.results.store import JobRecord, ResultStore, StoreError, VariantRecord, database_url

V1 = Path(__file__).parent / "data" / "results-v1"
V1_RUNS = ("20261202-005121-3f6a6f", "20261202-005130-2f7a13")
FAST = ["--warmup-seconds", "0.05", "--min-seconds", "0.2"]

RESULT = BenchmarkResult(
    job_id="job-1", backend="onnxruntime", provider="CPUExecutionProvider",
    samples_ns=(1_250_000, 1_300_000, 1_275_000, 9_000_000), fps=741.5,
    latency=LatencyStats(4, 1.25, 9.0, 3.2, 3.3, 1.29, 6.6, 7.8, 8.8, 1.03), load_ms=40.5, first_inference_ms=2.5,
    peak_rss_bytes=83 << 20, measure_seconds=3.01, warmup_iterations=12, batch_size=2, streams=1,
    compute_separable=True, compute_samples_ns=(1_000_000, 1_100_000),
    compute_latency=LatencyStats(2, 1.0, 1.1, 1.05, 0.05, 1.05, 1.09, 1.095, 1.099, 0.047),
    device=DeviceInfo("orin-01", "aarch64", "ARMv8 Processor rev 1 (v8l)", 12, 64 << 30, "Linux 5.15 tegra",
                      "3.10.12", (RuntimeInfo("onnxruntime", "1.17.1", ("CPUExecutionProvider",)),), ("cuda",),
                      ("ina3221",), "0.2.0", "edgefarm.v1.1"),
    power=PowerSummary(True, "ina3221", "", 7.25, 4.0, 4.9, 310),
    environment=Fingerprint("schedutil", 1_510_400, 2_201_600, "MAXN", "on", {"cpu": 41.5}, {"cpu": 47.0}, True,
                            ("cpu-thermal",), {"onnxruntime": "1.17.1", "jetpack": "6.0"}),
    accuracy_available=True, accuracy=0.975, engine_build_ms=0.0, engine_cache_hit=True,
    input_shapes=(("images", (2, 3, 640, 640)), ("scale", ())), input_source="inputs:" + "c" * 64, input_samples=8,
    fidelity=(OutputFidelity("scores", 0.9991, 31.5, 0.02, True, 0.98, 1.0, 16),
              OutputFidelity("boxes", 1.0, math.inf, 0.0, False, math.nan, math.nan, 16)),
)


def _equal_records(a: BenchmarkResult, b: BenchmarkResult) -> bool:
    """Records compare equal except that NaN never equals itself: compare through JSON, where it does
    (and where maps compare whatever order protobuf hands their keys back in)."""
    return json.dumps(asdict(a), sort_keys=True) == json.dumps(asdict(b), sort_keys=True)


def test_a_result_survives_the_wire_both_ways():
    assert _equal_records(wire.result_from_pb(wire.result_to_pb(RESULT)), RESULT)


def test_a_job_spec_survives_the_wire_and_keeps_its_zeros_and_unset_dla_core():
    spec = JobSpec("j", "a" * 64, "tensorrt", warmup_iterations=0, warmup_seconds=0.0, min_seconds=0.25,
                   input_shapes=(("images", (1, 3, 640, 640)),), precision="int8", dla_core=None)
    assert wire.spec_from_pb(wire.spec_to_pb(spec)) == spec
    assert not wire.spec_to_pb(spec).HasField("dla_core")
    assert wire.spec_from_pb(wire.spec_to_pb(replace(spec, dla_core=0))).dla_core == 0
    openvino = JobSpec("j", "a" * 64, "openvino", device="GPU", performance_hint="throughput", threads=4)
    assert wire.spec_from_pb(wire.spec_to_pb(openvino)) == openvino


def test_a_device_description_keeps_why_a_runtime_is_missing():
    device = replace(RESULT.device, missing_runtimes=(("executorch", "no ExecuTorch Python runtime for 3.8"),))
    assert wire.device_from_pb(wire.device_to_pb(device)) == device
    assert device.missing_reason("executorch").startswith("no ExecuTorch")
    assert device.missing_reason("openvino") == ""


def test_a_device_description_survives_the_wire():
    assert wire.device_from_pb(wire.device_to_pb(RESULT.device)) == RESULT.device


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "results.sqlite")
    return request.getfixturevalue("postgres_database")


def _store_one(store: ResultStore, result: BenchmarkResult = RESULT) -> tuple[str, JobRecord]:
    run_id = store.new_run("run detector.onnx", plan={"matrix": "m.yaml"})
    store.add_variant(run_id, VariantRecord("detector", "int8-static", {"reduce_range": "0"}, "a" * 64, 123_456,
                                            0.97, 12.5, {"fidelity_cosine": 0.999}, [{"name": "int8-static"}]))
    job = JobRecord(result.job_id, run_id, "detector", "int8-static", "orin-01", "onnxruntime", "a" * 64)
    store.add_job(job, target="pool:orin")
    store.add_result(job, result)
    return run_id, job


def test_what_is_stored_comes_back_as_the_same_record(store_url):
    store = ResultStore(store_url)
    run_id, job = _store_one(store)
    (stored,) = store.results(run_id)
    assert _equal_records(stored.result, RESULT)
    assert (stored.job, stored.target) == (job, "pool:orin")
    assert stored.variant.params == {"reduce_range": "0"} and stored.variant.stats == {"fidelity_cosine": 0.999}
    assert store.run_plan(run_id) == {"matrix": "m.yaml"}
    store.close()


def test_sql_reads_every_statistic_without_edgefarm(store_url):
    store = ResultStore(store_url)
    run_id, _ = _store_one(store)
    store.close()
    engine = sa.create_engine(database_url(store_url))
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT device, backend, provider, input_shapes, p50_ms, p99_ms, fps, load_ms, first_inference_ms, "
            "peak_rss_bytes, avg_power_w, energy_mj_per_inference, fidelity_cosine, fidelity_snr_db, cv, "
            "api_version, fingerprint FROM results WHERE run_id = :run"), {"run": run_id}).one()
    engine.dispose()
    assert row[:14] == ("orin-01", "onnxruntime", "CPUExecutionProvider", "images:2x3x640x640 scale:scalar", 1.29,
                        8.8, 741.5, 40.5, 2.5, 83 << 20, 7.25, 4.9, 0.9991, 31.5)
    assert row.api_version == "edgefarm.v1.1"
    fingerprint = row.fingerprint if isinstance(row.fingerprint, dict) else json.loads(row.fingerprint)
    assert fingerprint["nvpmodel_mode"] == "MAXN" and fingerprint["versions"]["jetpack"] == "6.0"


def test_a_board_without_a_power_sensor_stores_null_not_zero(store_url):
    store = ResultStore(store_url)
    run_id, _ = _store_one(store, replace(RESULT, power=PowerSummary(False, "", "no sensor on this board")))
    assert not store.results(run_id)[0].result.power.available
    frame = results_frame(store, run_id)
    assert frame.loc[0, "energy_mj_per_inference"] == "not available"
    store.close()
    engine = sa.create_engine(database_url(store_url))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT energy_mj_per_inference FROM results")).scalar() is None
    engine.dispose()


def test_the_previous_release_database_reports_identical_figures_after_the_upgrade(tmp_path):
    shutil.copy(V1 / "results.sqlite", tmp_path / "results.sqlite")
    store = ResultStore(tmp_path / "results.sqlite")
    for run_id in V1_RUNS:
        written = write_csv(results_frame(store, run_id), tmp_path / f"{run_id}.csv")
        before = pd.read_csv(V1 / f"report-{run_id}.csv", dtype=str, keep_default_na=False)
        after = pd.read_csv(written, dtype=str, keep_default_na=False)
        # Every column that release wrote, as the same text; columns added since come after them.
        assert after[list(before.columns)].equals(before)
        assert list(after.columns)[:len(before.columns)] == list(before.columns)
    assert [(s.id, s.kind, s.status, s.verdict, s.results, s.failures) for s in store.run_summaries()] == [
        (V1_RUNS[1], "nightly", "partial", "unchanged", 2, 1), (V1_RUNS[0], "run", "done", None, 2, 0)]
    (failure,) = store.failures(V1_RUNS[1])
    assert failure[1:] == ("transport", "device 'x86-03' at 127.0.0.9:50051: unavailable: connection refused")
    assert store.run_plan(V1_RUNS[1])["matrix"] == "matrix.yaml"
    assert [r.target for r in store.results(V1_RUNS[1])] == ["x86-pool", "x86-pool"]
    assert len(store.results(V1_RUNS[0])[0].result.samples_ns) == 9081   # the raw samples came along
    store.close()
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(schema.SCHEMA_VERSION),)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "results_store_v1" not in tables


def test_a_migrated_database_takes_new_results(tmp_path):
    shutil.copy(V1 / "results.sqlite", tmp_path / "results.sqlite")
    store = ResultStore(tmp_path / "results.sqlite")
    run_id, _ = _store_one(store)
    assert len(store.results(run_id)) == 1 and len(store.run_summaries()) == 3
    store.close()


def test_a_database_from_a_newer_edgefarm_is_refused_untouched(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"has schema version 99, written by a newer edgefarm .*upgrade edgefarm"):
        ResultStore(path)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    with pytest.raises(StoreError, match=rf"results database {path} cannot be opened: file is not a database"):
        ResultStore(path)
    assert path.read_text() == "not a database\n" * 100


@pytest.mark.parametrize(("given", "url"), [
    ("results.sqlite", "sqlite:///results.sqlite"),
    ("sqlite:////var/lib/edgefarm/r.sqlite", "sqlite:////var/lib/edgefarm/r.sqlite"),
    ("postgresql://farm@db.lab/results", "postgresql+psycopg://farm@db.lab/results"),
])
def test_database_urls(given, url):
    assert database_url(given) == url


def test_an_unsupported_database_url_is_refused():
    with pytest.raises(StoreError, match=r"--db mysql://farm@db/results: results go to a file path, "
                                         r"sqlite:///path or postgresql://user@host/db"):
        database_url("mysql://farm@db/results")


def _edgefarm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.mark.slow
def test_runs_from_two_directories_share_one_postgresql_store(postgres_database, tmp_path, model_cache):
    run_ids = []
    for name in ("laptop", "ci-runner"):
        work = tmp_path / name
        work.mkdir()
        proc = _edgefarm("run", "digits-cnn", "--local", "--db", postgres_database, "--cache-dir", str(model_cache),
                         *FAST, cwd=work)
        assert proc.returncode == 0, proc.stderr
        run_ids.append(proc.stdout.split("run ")[-1].split(":")[0])
        assert list(work.iterdir()) == []  # nothing local: no SQLite file named after the URL
    third = tmp_path / "reviewer"
    third.mkdir()
    listed = _edgefarm("runs", "--db", postgres_database, "--json", cwd=third)
    assert listed.returncode == 0, listed.stderr
    assert {run["id"] for run in json.loads(listed.stdout)} >= set(run_ids)
    report = _edgefarm("report", run_ids[0], "--db", postgres_database, "--csv", "r.csv", "--html", "r.html",
                       cwd=third)
    assert report.returncode == 0, report.stderr
    frame = pd.read_csv(third / "r.csv")
    assert list(frame["run_id"].unique()) == [run_ids[0]] and frame.loc[0, "latency_p50_ms"] > 0


# --- run liveness: a run whose controller died is shown as abandoned, and resume may take it over ---------

def test_a_running_run_turns_abandoned_once_its_heartbeat_stops(store_url):
    store = ResultStore(store_url)
    run_id = store.new_run("farm m.yaml", "nightly")
    created = store.run_summaries(1)[0].created_at
    assert store.run_status(run_id, now=created + ABANDONED_AFTER_S - 1) == "running"
    assert store.run_status(run_id, now=created + ABANDONED_AFTER_S + 1) == "abandoned"
    store.beat(run_id)
    assert store.run_status(run_id) == "running"
    (summary,) = store.run_summaries(1, now=time.time() + ABANDONED_AFTER_S + 1)
    assert summary.status == "abandoned"
    store.finish_run(run_id, "done")   # a finished run never looks abandoned
    assert store.run_status(run_id, now=time.time() + 3600) == "done"
    store.close()


def test_a_run_whose_controller_process_on_this_host_is_gone_is_abandoned_at_once(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    run_id = store.new_run("farm m.yaml", "nightly")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    with sqlite3.connect(tmp_path / "r.sqlite") as db:   # as if that process had started the run
        db.execute("UPDATE runs SET controller = ?", (f"{socket.gethostname()}:{dead.stdout.strip()}",))
    assert store.run_status(run_id) == "abandoned"
    store.take_over(run_id)                              # a resume: this process runs it now
    assert store.run_status(run_id) == "running"
    store.close()


def test_the_heartbeat_beats_until_its_block_ends(tmp_path):
    beats = threading.Semaphore(0)
    with RunHeartbeat(beats.release, every_s=0.01):
        assert beats.acquire(timeout=10) and beats.acquire(timeout=10)
    while beats.acquire(blocking=False):   # drain what was beaten before the block ended
        pass
    time.sleep(0.05)
    assert not beats.acquire(blocking=False)
