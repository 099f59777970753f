"""`edgefarm tune` on a real local agent over gRPC with mobilenet-v2: the recommendation is within the
budget and on the measured front, the hardware-aware mixed-precision decisions follow the per-layer
ratios measured on this machine, every measurement is a stored result that report and diff read, and
bad input (an unmeetable budget, an objective the board cannot measure) is said in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgefarm.api import Farm
from edgefarm.controller.results.store import ResultStore
from edgefarm.controller.tuning import hwmp
from edgefarm.controller.tuning.front import pareto
from tests.test_report_browser import WINDOW, run_chromium

pytestmark = pytest.mark.slow
RECIPES = ["fp32", "int8-static", "int8-dynamic", "mixed-int8"]
FAST = ["--min-seconds", "0.4"]


def _edgefarm(factory: pytest.TempPathFactory, work: Path, *args: str) -> subprocess.CompletedProcess:
    cache = factory.getbasetemp() / "zoo-cache"   # mobilenet-v2 trained once per session (test_layer_diff too)
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", *args, "--db", str(work / "r.sqlite"),
                           "--cache-dir", str(cache)], capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("tune")
    proc = _edgefarm(tmp_path_factory, work, "tune", "mobilenet-v2", "--local", "--max-drop", "1", "--recipes",
                     *RECIPES, "--json", "--out", str(work / "out"), *FAST)
    assert proc.returncode == 0, proc.stderr
    return {"json": json.loads(proc.stdout), "work": work}


def test_the_recommendation_is_within_budget_and_on_the_measured_front(tuned):
    found = tuned["json"]
    (card,) = found["cards"]
    assert card["drop_points"] <= 1.0
    assert card["job_id"] in {row["job_id"] for row in found["front"]}
    store = ResultStore(tuned["work"] / "r.sqlite")
    try:
        stored = store.results(found["run_id"])
    finally:
        store.close()
    assert len(stored) == found["jobs"]               # every board measurement is a stored result
    # the front is exactly the non-dominated set of the full measurements, rebuilt here from the store
    rows = Farm.local(db=tuned["work"] / "r.sqlite").get_run(found["run_id"]).frame
    full = rows[~rows["variant"].str.endswith("[brief]")]
    assert set(full["variant"]) >= {row["candidate"] for row in found["front"]}
    fastest = min(row["latency_p50_ms"] for row in found["front"] if row["drop_points"] <= 1.0)
    assert card["p50_ms"] == pytest.approx(fastest)
    assert "edgefarm run mobilenet-v2 --local --recipe" in card["reproduce"] or "tune" in card["reproduce"]


def test_hwmp_decisions_follow_the_ratios_measured_on_this_board(tuned):
    found = tuned["json"]
    assert found["decisions"], found["hwmp"]
    store = ResultStore(tuned["work"] / "r.sqlite")
    try:
        brief = {r.job.variant: r for r in store.results(found["run_id"]) if r.job.variant.endswith("[brief]")}
    finally:
        store.close()
    fp32 = next(r for v, r in brief.items() if v.startswith("fp32 "))
    int8 = next(r for v, r in brief.items() if v.startswith("int8-static"))
    speeds = hwmp.layer_speedups(fp32, int8)
    timed = [d for d in found["decisions"] if d["speedup"] is not None]
    assert len(timed) >= len(found["decisions"]) // 2
    for d in timed:
        _, a, b = speeds[hwmp.normalize_source(d["layer"])]
        assert d["speedup"] == pytest.approx(a / b)
        assert f"int8 {a / b:.2f}x here" in d["reason"]
        if a / b < hwmp.MIN_SPEEDUP:
            assert not d["quantized"] and d["reason"].endswith("kept fp32")
    assert any(not d["quantized"] for d in timed) or all(d["speedup"] >= hwmp.MIN_SPEEDUP for d in timed)


def test_report_and_diff_read_a_tune_run(tuned, tmp_path):
    farm = Farm.local(db=tuned["work"] / "r.sqlite")
    run_id = tuned["json"]["run_id"]
    report = farm.report(run_id, html=tmp_path / "r.html")
    assert report.html.is_file() and len(report.frame) == tuned["json"]["jobs"]
    variants = list(report.frame["variant"])
    fp32 = next(v for v in variants if v.startswith("fp32 ") and v.endswith("[brief]"))
    int8 = next(v for v in variants if v.startswith("int8-static") and v.endswith("[brief]"))
    assert not farm.diff(f"{run_id}:{fp32}", f"{run_id}:{int8}").frame.empty


@pytest.mark.browser
def test_the_tune_page_renders_the_front_and_the_card(chromium: str, tuned, tmp_path: Path) -> None:
    page = tuned["work"] / "out" / "tune.html"
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout
    assert 'id="fig-tune-front' in dom and "<svg" in dom
    assert "Deployment card" in dom and "per-layer decisions" in dom
    screenshot = tmp_path / "tune.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={screenshot}",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", page.as_uri())
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert (pixels < 235).any(axis=2).mean() > 0.05, "the page is blank"
    assert (pixels.max(axis=2) - pixels.min(axis=2) > 80).mean() > 0.0015, "the front plot did not render"


def test_a_budget_nothing_meets_is_said_with_the_closest_and_exit_1():
    # On the bundled models every int8 recipe stays within 0 points of fp32, so the host's verdicts are
    # given here as the host check records them: all over the budget, nothing sent to a board.
    from edgefarm.api.tuning import Tuning
    from edgefarm.controller.tuning.host import HostCheck
    from edgefarm.controller.tuning.tune_run import TuneConfig, TuneOutcome

    checks = (HostCheck("int8-dynamic", 0.95, 1.9, False, "accuracy drop 1.90 points, over 1"),
              HostCheck("fp16", 0.96, 1.2, False, "accuracy drop 1.20 points, over 1"))
    found = Tuning.of(TuneOutcome("r1", TuneConfig("m", recipes=("fp16", "int8-dynamic")), checks, ()), "db",
                      "--local", ())
    assert found.exit_code == 1 and not found.cards
    assert found.message.startswith("no candidate meets --max-drop 1: the closest are fp16 (drop 1.20 on the "
                                    "host); int8-dynamic (drop 1.90 on the host)")


def test_energy_on_a_board_without_a_power_sensor_is_refused_before_any_job(tmp_path_factory):
    work = tmp_path_factory.mktemp("tune-energy")
    proc = _edgefarm(tmp_path_factory, work, "tune", "mobilenet-v2", "--local", "--objective", "energy", *FAST)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert "--objective energy" in line and "no power sensor" in line
    store = ResultStore(work / "r.sqlite")
    try:
        assert not store.run_summaries()
    finally:
        store.close()


def test_pareto_keeps_exactly_the_non_dominated_rows():
    import pandas as pd

    rows = pd.DataFrame({"candidate": list("abcd"), "latency_p50_ms": [1.0, 2.0, 1.5, 1.0],
                         "quality": [0.90, 0.95, 0.90, 0.90], "size_bytes": [10, 10, 10, 5]})
    assert list(pareto(rows)["candidate"]) == ["d", "b"]
