"""`edgefarm run --profile` stores layer tables through a real local agent over gRPC, and `edgefarm diff`
lines up mobilenet-v2's fp32 and int8-static tables; the store keeps them across a migration; bad
input (a side without a profile, an ambiguous reference) is one clear line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgefarm.controller.agents import wire
from edgefarm.controller.agents.records import JobSpec, LayerProfile, LayerRow
from edgefarm.controller.reports.layer_diff import DiffError, diff_results
from edgefarm.controller.results import schema
from edgefarm.controller.results.store import ResultStore
from tests.test_results_store import RESULT, _equal_records, _store_one

pytestmark = pytest.mark.slow
FAST = ["--warmup-seconds", "0.05", "--min-seconds", "0.3", "--min-iterations", "3"]
PROFILE = LayerProfile(True, "", "onnxruntime enable_profiling", 50, 5, (
    LayerRow("/0/Conv_token_1", "QLinearConv", "Conv", "CPUExecutionProvider", "uint8", False, 1, True, 63.0, 70.0,
             ("1x48x48x16",), ("/0/Conv", "input_DequantizeLinear")),
    LayerRow("input_QuantizeLinear", "QuantizeLinear", "Quantize", "CPUExecutionProvider", "uint8", True, 1, True,
             6.0, 7.5, ("1x1x96x96",), ("input_QuantizeLinear",)),
    LayerRow("CONV_2D:0", "CONV_2D", "Conv", "XNNPACK", "fp32", False, 1, False, 0.0, 0.0, ("1x48x48x16",), ("t",))),
    "", "kernel events", "", 120.0)


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("layer-diff")
    proc = _edgefarm(tmp_path_factory, work, "run", "mobilenet-v2", "--local", "--recipe", "fp32", "--recipe",
                     "int8-static", "--profile", *FAST)
    assert proc.returncode == 0, proc.stderr
    return work


def _edgefarm(factory: pytest.TempPathFactory, work: Path, *args: str) -> subprocess.CompletedProcess:
    cache = factory.getbasetemp() / "zoo-cache"   # mobilenet-v2 trained once per session (test_models_zoo too)
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", *args, "--db", str(work / "r.sqlite"),
                           "--cache-dir", str(cache)], capture_output=True, text=True, timeout=900)


def test_a_layer_profile_survives_the_wire_and_the_store(tmp_path):
    result = RESULT.__class__(**{**RESULT.__dict__, "layer_profile": PROFILE})
    assert _equal_records(wire.result_from_pb(wire.result_to_pb(result)), result)
    spec = JobSpec("j", "a" * 64, "litert", profile=True, profile_iterations=7, benchmark_model_path="/opt/bm")
    assert wire.spec_from_pb(wire.spec_to_pb(spec)) == spec
    store = ResultStore(tmp_path / "r.sqlite")
    run_id, _ = _store_one(store, result)
    assert store.results(run_id)[0].result.layer_profile == PROFILE
    store.close()


def test_the_profiled_run_stores_layer_tables_and_covers_the_end_to_end_time(profiled_run, tmp_path_factory):
    store = ResultStore(profiled_run / "r.sqlite")
    (run_id, _), = [(r.id, r) for r in store.run_summaries()]
    for stored in store.results(run_id):
        profile = stored.result.layer_profile
        assert profile is not None and profile.available and len(profile.layers) >= 30
        layer_sum = sum(row.median_us for row in profile.layers)
        coverage = layer_sum / (stored.result.latency.p50_ms * 1000)
        # ONNX Runtime's profiler slows each kernel it times (docs/profiling.md); a 2-core CI box is noisy
        assert 0.6 <= coverage <= 2.5, coverage
        # kernels run one after another inside a run: their sum fits in the profiled run's own time
        assert 0.3 <= layer_sum / profile.profiled_median_us <= 1.0
    store.close()


def test_diff_aligns_fp32_and_int8_and_explains_where_the_time_goes(profiled_run, tmp_path_factory):
    store = ResultStore(profiled_run / "r.sqlite")
    diff = diff_results(store, "latest:fp32", "latest:int8-static")
    store.close()
    assert diff.aligned_share >= 0.9
    frame = diff.frame()
    assert (frame.match == "source").sum() >= 25 and frame.ratio.notna().sum() >= 25
    totals = diff.totals().set_index(["what", "key"])
    assert totals.loc[("glue", "all"), "b_us"] > 0   # Q/DQ and transposes only exist in int8
    proc = _edgefarm(tmp_path_factory, profiled_run, "diff", "latest:fp32", "latest:int8-static", "--json",
                     "--csv", str(profiled_run / "diff.csv"), "--html", str(profiled_run / "diff.html"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["aligned_share"] >= 0.9 and (profiled_run / "diff.csv").read_text().startswith("match,family")
    page = (profiled_run / "diff.html").read_text()
    assert 'id="fig-diff"' in page and 'id="totals"' in page and 'id="groups"' in page
    assert "Content-Security-Policy" in page and "QuantizeLinear" in page and "uint8" in page
    text = _edgefarm(tmp_path_factory, profiled_run, "diff", "latest:fp32", "latest:int8-static").stdout
    assert "compute layers of A aligned" in text and "glue (quantize/dequantize" in text


def test_the_report_of_the_profiled_run_shows_each_variants_layers(profiled_run, tmp_path_factory):
    html = profiled_run / "report.html"
    proc = _edgefarm(tmp_path_factory, profiled_run, "report", "latest", "--html", str(html), "--csv",
                     str(profiled_run / "report.csv"))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    for n in (1, 2):   # fp32, then int8-static
        assert all(f'id="layers-{n}-{view}"' in page for view in ("coverage", "family", "placement", "top"))
        assert f'<figure id="fig-layers-{n}">' in page
    assert "profiler slowdown: profiled run ÷ headline" in page and "not recorded" not in page
    assert "Without a per-layer profile" not in page and "CPUExecutionProvider" in page


def test_a_diff_without_profiles_says_which_side_lacks_one_and_how_to_make_one(tmp_path, profiled_run):
    store = ResultStore(tmp_path / "r.sqlite")
    run_id, job = _store_one(store)
    with pytest.raises(DiffError, match=r"side A .* no layer profile.*--profile"):
        diff_results(store, job.id, job.id)
    with pytest.raises(DiffError, match="no run or result"):
        diff_results(store, "nope", job.id)
    store.close()
    proc = subprocess.run([sys.executable, "-m", "edgefarm.controller", "diff", "latest", "latest", "--db",
                           str(profiled_run / "r.sqlite")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "RUN:VARIANT" in proc.stderr and "Traceback" not in proc.stderr
    assert run_id


def test_schema_5_adds_layer_tables_to_an_older_store(tmp_path):
    assert schema.SCHEMA_VERSION >= 5
    store = ResultStore(tmp_path / "r.sqlite")
    store.close()
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'r.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE layers")
        conn.exec_driver_sql("DROP TABLE layer_profiles")
        conn.exec_driver_sql("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    engine.dispose()
    store = ResultStore(tmp_path / "r.sqlite")
    run_id, _ = _store_one(store, RESULT.__class__(**{**RESULT.__dict__, "layer_profile": PROFILE}))
    assert store.results(run_id)[0].result.layer_profile == PROFILE
    store.close()
