"""edgefarm nightly on two real local agents: unchanged → exit 0; one variant 20 % slower → exit 1; a dead
board → exit 3 with JUnit errors, and such a night never becomes the baseline."""
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks.models import mlp_model
from tests.farm_fixtures import devices_yaml, local_agents
from tests.postgres_server import free_port

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
# Port 9 (discard) on loopback: nothing listens, so every dial is refused at once.
DEAD_BOARD = """  - name: board-dead
    host: 127.0.0.1
    port: 9
    tags: {role: bench}
    backends: [onnxruntime]
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


def test_an_ephemeral_runner_finds_last_nights_baseline_in_a_shared_postgresql_store(farm, postgres_database,
                                                                                     tmp_path):
    """Each night on a fresh CI runner: no local state, the baseline comes from the team's store."""
    runs = []
    for runner in ("runner-1", "runner-2"):
        work = tmp_path / runner
        work.mkdir()
        (work / "nightly.yaml").write_text(MATRIX.replace("models: [steady.onnx, changing.onnx]",
                                                          "models: [steady.onnx]"))
        shutil.copy(farm / "steady.onnx", work / "steady.onnx")
        proc = subprocess.run([sys.executable, "-m", "edgefarm.controller", "nightly",
                               "--matrix", str(work / "nightly.yaml"), "--devices", str(farm / "devices.yaml"),
                               "--db", postgres_database, "--cache-dir", str(work / "cache"),
                               "--out", str(work / "out")], capture_output=True, text=True, timeout=600, cwd=work)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr   # 1 only for a confirmed A/A "regression"
        runs.append(proc.stdout.split("nightly ")[-1].split(" ")[0])
        assert not list(work.glob("*.sqlite"))   # nothing stored on the runner itself
    assert f"nightly {runs[1]} against {runs[0]}:" in proc.stdout


def test_a_night_with_a_dead_board_exits_3_with_junit_errors_and_never_becomes_last_good(farm, tmp_path):
    """The first release printed "ok", exited 0 and wrote failures="0" errors="0" for this night."""
    work = tmp_path / "half-dead"
    work.mkdir()
    alive = (farm / "devices.yaml").read_text().split("  - name: board-b")[0]
    (work / "devices.yaml").write_text(alive.replace("pools:", "") + DEAD_BOARD + "pools:\n  bench: {role: bench}\n")
    (work / "nightly.yaml").write_text(MATRIX.replace("  - device: board-b", "  - device: board-dead")
                                       .replace("models: [steady.onnx, changing.onnx]", "models: [steady.onnx]"))
    shutil.copy(farm / "steady.onnx", work / "steady.onnx")
    first = nightly(work)
    assert first.returncode == 3, first.stdout + first.stderr
    assert "planned 2, measured 1, not measured 1, regressed 0: INCOMPLETE" in first.stdout
    assert "not measured  steady/fp32 on board-dead" in first.stdout
    suite = ET.parse(work / "out" / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("2", "1", "0")
    (error,) = [case.find("error") for case in suite.iter("testcase") if case.find("error") is not None]
    assert "board-dead" in error.text and "no agent answered" in error.get("message")
    assert "steady,fp32,board-dead,onnxruntime,transport," in (work / "out" / "not-measured.csv").read_text()
    assert "not measured" in (work / "out" / "report.html").read_text()
    second = nightly(work)
    assert second.returncode == 3 and "against no baseline" in second.stdout  # an incomplete night is no baseline


def test_a_night_with_every_board_down_exits_3(tmp_path):
    (tmp_path / "devices.yaml").write_text("devices:\n" + DEAD_BOARD)
    (tmp_path / "nightly.yaml").write_text("models: [steady.onnx]\nrecipes: [fp32]\ntargets: [{device: board-dead}]\n")
    mlp_model(tmp_path / "steady.onnx", width=32, depth=1)
    proc = nightly(tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "planned 1, measured 0, not measured 1, regressed 0: INCOMPLETE" in proc.stdout
    suite = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("errors")) == ("1", "1")


def _agent_on(port: int, cache: Path) -> subprocess.Popen:
    """An agent on a fixed port, so a board can go down and come back at the same address."""
    proc = subprocess.Popen([sys.executable, "-m", "edgefarm.agent", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--cache-dir", str(cache)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert "listening" in proc.stdout.readline()
    return proc


def test_a_board_that_died_and_came_back_heals_without_a_manual_unquarantine(farm, tmp_path):
    """The Done-when of "a nightly you can trust": exit 3 while a board is dead, exit 0 once it is back."""
    port = free_port()
    work = tmp_path / "heal"
    work.mkdir()
    alive = (farm / "devices.yaml").read_text().split("  - name: board-b")[0].replace("pools:", "")
    (work / "devices.yaml").write_text(alive + DEAD_BOARD.replace("port: 9", f"port: {port}") +
                                       "pools:\n  bench: {role: bench}\n")
    (work / "nightly.yaml").write_text(MATRIX.replace("  - device: board-b", "  - device: board-dead")
                                       .replace("models: [steady.onnx, changing.onnx]", "models: [steady.onnx]"))
    shutil.copy(farm / "steady.onnx", work / "steady.onnx")
    dead = nightly(work)
    assert dead.returncode == 3, dead.stdout + dead.stderr
    assert "board-dead quarantined" in dead.stderr   # three transport failures in a row
    agent = _agent_on(port, work / "agent-cache")
    try:
        healed = nightly(work)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        agent.stdout.close()
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "board-dead passed its health check and is back in service" in healed.stderr
    assert "planned 2, measured 2, not measured 0" in healed.stdout
