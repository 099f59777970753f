"""edgefarm nightly on two real local agents: unchanged → exit 0; one variant 20 % slower → exit 1."""
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from benchmarks.models import mlp_model
from tests.farm_fixtures import devices_yaml, local_agents

pytestmark = pytest.mark.slow
MATRIX = """models: [steady.onnx, changing.onnx]
recipes: [fp32]
targets:
  - device: board-a
  - device: board-b
measure: {warmup_seconds: 0.5, min_seconds: 3.0}
# Both "boards" share this machine's 2 cores, so A/A nights of a ~20 us MLP drift by up to ~10 %
# with whichever job the other board runs meanwhile; a real board has no such neighbour. The
# injected regression below is ~25 % more work, measured at +30-50 %.
regression: {min_effect: 0.15}
"""


def nightly(work, *extra):
    return subprocess.run([sys.executable, "-m", "edgefarm.controller", "nightly",
                           "--matrix", str(work / "nightly.yaml"),
                           "--devices", str(work / "devices.yaml"), "--db", str(work / "results.sqlite"),
                           "--cache-dir", str(work / "cache"), "--out", str(work / "out"), *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    work = tmp_path_factory.mktemp("nightly")
    with local_agents(work, 2) as agents:
        devices_yaml(work / "devices.yaml", agents, ["board-a", "board-b"])
        (work / "nightly.yaml").write_text(MATRIX)
        mlp_model(work / "steady.onnx", width=256, depth=4)
        mlp_model(work / "changing.onnx", width=256, depth=4)
        yield work


def test_first_night_sets_the_baseline(farm):
    proc = nightly(farm)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "first night" in proc.stdout
    assert (farm / "out" / "report.html").exists() and (farm / "out" / "junit.xml").exists()


def test_an_unchanged_matrix_exits_0(farm):
    proc = nightly(farm)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "regressed" not in proc.stdout.split("nightly ")[0]


def test_a_variant_made_20_percent_slower_exits_1(farm):
    mlp_model(farm / "changing.onnx", width=256, depth=5)  # one more layer: ~25 % more work
    proc = nightly(farm)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    regressed = [line for line in proc.stdout.splitlines() if line.strip().startswith("regressed")]
    assert regressed and all("changing/fp32" in line for line in regressed)
    suite = ET.parse(farm / "out" / "junit.xml").getroot()
    failures = [tc.get("classname") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert failures and all("changing" in name for name in failures)
    assert 'id="fig-trend"' in (farm / "out" / "report.html").read_text()
