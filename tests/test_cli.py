"""The edgefarm CLI as a user runs it: real subprocesses, a real local agent, a real SQLite file."""
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.models import mlp_model
from edgefarm.controller.reports import REPORT_COLUMNS

FAST = ["--warmup-seconds", "0.05", "--min-seconds", "0.2"]


def edgefarm(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, model_cache):
    work = tmp_path_factory.mktemp("demo")
    proc = edgefarm("demo", "--out", str(work / "out"), "--db", str(work / "results.sqlite"),
                    "--cache-dir", str(model_cache), *FAST)
    assert proc.returncode == 0, proc.stderr
    return work, proc


def _count_results(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def test_demo_writes_four_variants_with_every_column(demo):
    work, proc = demo
    df = pd.read_csv(work / "out" / "report.csv")
    assert sorted(df["variant"]) == sorted(["fp32", "fp16", "int8-dynamic", "int8-static"])
    assert df[list(REPORT_COLUMNS)].notna().all().all()
    assert (df["model"] == "digits-cnn").all() and (df["device"] == "local").all()
    assert str(work / "out" / "report.csv") in proc.stdout and str(work / "out" / "report.html") in proc.stdout


def test_demo_int8_static_is_small_and_accurate(demo):
    df = pd.read_csv(demo[0] / "out" / "report.csv").set_index("variant")
    assert df.loc["int8-static", "size_bytes"] <= 0.30 * df.loc["fp32", "size_bytes"]
    assert abs(df.loc["int8-static", "accuracy"] - df.loc["fp32", "accuracy"]) <= 0.01
    assert df.loc["fp32", "accuracy"] >= 0.95


def test_demo_records_its_inputs_and_the_fidelity_of_every_variant(demo):
    df = pd.read_csv(demo[0] / "out" / "report.csv").set_index("variant")
    assert (df["input_shapes"] == "input:1x1x8x8").all() and df["synthetic_inputs"].all()
    assert df.loc["fp32", "fidelity_cosine"] == 1.0 and df.loc["fp32", "device_fidelity_cosine"] == 1.0
    for variant in ("fp16", "int8-dynamic", "int8-static"):  # against fp32 on the eval images, here and on the board
        assert 0.99 < df.loc[variant, "fidelity_cosine"] < 1.0
        assert df.loc[variant, "device_fidelity_cosine"] == pytest.approx(df.loc[variant, "fidelity_cosine"], abs=1e-6)
    assert df["fidelity_flag"].isna().all()


def test_demo_stores_raw_samples_in_sqlite(demo):
    db = demo[0] / "results.sqlite"
    assert _count_results(db) == 4
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0] == 4


def test_report_regenerates_from_the_store(demo, tmp_path):
    work, _ = demo
    proc = edgefarm("report", "latest", "--db", str(work / "results.sqlite"),
                    "--csv", str(tmp_path / "r.csv"), "--html", str(tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "r.csv")) == 4
    assert "<svg" in (tmp_path / "r.html").read_text()


def test_run_json_on_a_user_model(tmp_path, model_cache):
    model = mlp_model(tmp_path / "mine.onnx")
    proc = edgefarm("run", str(model), "--local", "--json", "--db", str(tmp_path / "r.sqlite"),
                    "--cache-dir", str(model_cache), *FAST)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    (row,) = out["results"]
    assert row["model"] == "mine" and row["variant"] == "fp32" and row["latency_p99_ms"] > 0
    assert row["energy_mj_per_inference"] == "not available"


def _bad_input_cases(tmp_path: Path, model_cache: Path) -> dict[str, tuple[list[str], str]]:
    real = mlp_model(tmp_path / "real.onnx")
    (tmp_path / "notes.onnx").write_text("this is not a model\n")
    (tmp_path / "cut.onnx").write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    (tmp_path / "bad.yaml").write_text("devices:\n  - name: x\n    host: 127.0.0.1\n    prot: 1\n")
    (tmp_path / "dead.yaml").write_text(
        "devices:\n  - name: dead-board\n    host: 127.0.0.1\n    port: 9\n    backends: [onnxruntime]\n")
    return {
        "missing model": (["run", str(tmp_path / "nope.onnx"), "--local"], "nope.onnx"),
        "not a model": (["run", str(tmp_path / "notes.onnx"), "--local"], "notes.onnx"),
        "truncated onnx": (["run", str(tmp_path / "cut.onnx"), "--local"], "cut.onnx"),
        "malformed devices.yaml": (["run", "digits-cnn", "--device", "x", "--devices", str(tmp_path / "bad.yaml")],
                                   "bad.yaml:4"),
        "unknown recipe": (["run", "digits-cnn", "--local", "--recipe", "int3"], "valid recipes: "),
        "unknown model": (["run", "resnet-9000", "--local"], "digits-cnn"),
        "unreachable device": (["run", str(real), "--device", "dead-board", "--devices", str(tmp_path / "dead.yaml")],
                               "dead-board"),
    }


def test_each_bad_input_is_one_clear_line_exit_2_and_loses_nothing(demo, tmp_path, model_cache):
    db = demo[0] / "results.sqlite"
    before = _count_results(db)
    for case, (args, needle) in _bad_input_cases(tmp_path, model_cache).items():
        proc = edgefarm(*args, "--db", str(db), "--cache-dir", str(model_cache), *FAST)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("edgefarm: error:")]
        assert proc.returncode == 2, f"{case}: exit {proc.returncode}\n{proc.stderr}"
        assert len(lines) == 1 and needle in lines[0], f"{case}: {proc.stderr}"
        assert "Traceback" not in proc.stderr, case
    assert _count_results(db) == before


def test_devices_check_accepts_the_shipped_file_and_rejects_a_bad_one(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    ok = edgefarm("devices", "check", str(repo / "devices.yaml"))
    assert ok.returncode == 0 and "4 device(s) valid" in ok.stdout
    (tmp_path / "d.yaml").write_text("devices:\n  - name: a\n    host: h\n    port: 99999\n    backends: [x]\n")
    bad = edgefarm("devices", "check", str(tmp_path / "d.yaml"))
    assert bad.returncode == 2 and "d.yaml:4" in bad.stderr


@pytest.mark.parametrize("sub", ["demo", "run", "report", "devices"])
def test_every_subcommand_has_help_with_examples(sub):
    proc = edgefarm(sub, "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout


def _stored_result(db: Path):
    from edgefarm.controller.results.store import ResultStore

    store = ResultStore(db)
    try:
        (stored,) = store.results(store.latest_run())
    finally:
        store.close()
    return stored.result


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_run_local_stores_tiers_fingerprint_and_honest_power(kind, tmp_path, model_cache, tflite_models):
    model = tflite_models / "int8.tflite" if kind == "tflite" else mlp_model(tmp_path / "m.onnx")
    proc = edgefarm("run", str(model), "--local", "--db", str(tmp_path / "r.sqlite"),
                    "--cache-dir", str(model_cache), *FAST)
    assert proc.returncode == 0, proc.stderr
    result = _stored_result(tmp_path / "r.sqlite")
    assert result.backend == ("litert" if kind == "tflite" else "onnxruntime")
    assert result.load_ms > 0 and result.first_inference_ms > 0            # cold tier
    assert result.latency.count == len(result.samples_ns) > 0               # end-to-end host tier
    assert not result.compute_separable and not result.compute_samples_ns  # said, not faked
    assert result.environment.versions["agent"] and result.environment.temps_start_c is not None
    assert not result.power.available and result.power.unavailable_reason


def test_recipes_on_a_prebuilt_tflite_are_refused(tmp_path, model_cache, tflite_models):
    proc = edgefarm("run", str(tflite_models / "int8.tflite"), "--local", "--recipe", "int8-static",
                    "--db", str(tmp_path / "r.sqlite"), "--cache-dir", str(model_cache))
    assert proc.returncode == 2 and "runs as is" in proc.stderr


def test_run_on_a_board_leased_by_someone_else_is_refused_then_runs(tmp_path, model_cache):
    from edgefarm.controller.leases import open_lease_manager, sqlite_url
    from tests.farm_fixtures import devices_yaml, local_agents

    model = mlp_model(tmp_path / "m.onnx")
    leases = sqlite_url(tmp_path / "leases.sqlite")
    with local_agents(tmp_path, 1) as agents, open_lease_manager(leases) as manager:
        devices = devices_yaml(tmp_path / "devices.yaml", agents, ["board-a"])
        args = ["run", str(model), "--device", "board-a", "--devices", str(devices), "--leases", leases,
                "--db", str(tmp_path / "r.sqlite"), "--cache-dir", str(model_cache), *FAST]
        nightly = manager.acquire("board-a", "nightly@ci", "nightly run", 120)
        refused = edgefarm(*args)
        assert refused.returncode == 2 and "is leased by nightly@ci (nightly run)" in refused.stderr
        with sqlite3.connect(tmp_path / "r.sqlite") as db:  # refused, not "failed": nothing went wrong on a board
            assert db.execute("SELECT status FROM runs").fetchall() == [("refused",)]
        manager.release(nightly)
        ran = edgefarm(*args)
        assert ran.returncode == 0, ran.stderr
        assert manager.states(["board-a"])[0].status == "idle"  # released at the end of the run


def test_runs_lists_stored_runs_and_report_points_there(demo):
    db = demo[0] / "results.sqlite"
    listed = edgefarm("runs", "--db", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    # Other tests' refused runs may share this database (a refused run still leaves a row: issue 12).
    (run,) = [r for r in json.loads(listed.stdout) if r["command"] == "demo"]
    assert run["results"] == 4 and run["failures"] == 0 and run["status"] == "done"
    assert run["id"] in edgefarm("runs", "--db", f"sqlite:///{db}").stdout
    missing = edgefarm("report", "nope", "--db", str(db))
    assert missing.returncode == 2 and "list runs with 'edgefarm runs'" in missing.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["runs", "--db", "mysql://farm@db.lab/results"], "--db mysql://farm@db.lab/results: results go to a file "
                                                      "path, sqlite:///path or postgresql://user@host/db"),
    (["runs", "--db", "postgresql://farm@127.0.0.1:9/results"],
     "results database postgresql://farm@127.0.0.1:9/results cannot be opened"),
    (["run", "digits-cnn", "--local", "--min-seconds", "0"], "--min-seconds must be > 0, got 0.0"),
    (["run", "digits-cnn", "--local", "--warmup-seconds", "0"], "--warmup-seconds must be > 0"),
])
def test_settings_that_would_silently_become_something_else_are_refused(tmp_path, args, needle):
    proc = subprocess.run([sys.executable, "-m", "edgefarm.controller", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir())  # no stray SQLite file named after the URL


def test_a_ca_error_is_one_line_not_a_traceback(tmp_path):
    assert edgefarm("ca", "init", "--dir", str(tmp_path / "ca")).returncode == 0
    again = edgefarm("ca", "init", "--dir", str(tmp_path / "ca"))
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.startswith("edgefarm: error: a farm CA already exists")


def test_a_cap_that_cuts_measuring_short_of_min_seconds_is_said(tmp_path, model_cache):
    """The first release cut --min-seconds 20 to about 10 s with its --max-iterations default, silently."""
    proc = edgefarm("run", "digits-cnn", "--local", "--db", str(tmp_path / "r.sqlite"), "--cache-dir",
                    str(model_cache), "--warmup-seconds", "0.05", "--min-seconds", "30", "--max-iterations", "20",
                    "--min-iterations", "10")
    assert proc.returncode == 0, proc.stderr
    assert "edgefarm: warning: fp32 on local: measuring stopped at the --max-iterations cap after" in proc.stderr
    assert "short of --min-seconds 30; raise the cap for the full duration" in proc.stderr
    result = _stored_result(tmp_path / "r.sqlite")
    assert (result.stopped_by, result.latency.count) == ("max-iterations", 20) and result.measure_seconds < 30
