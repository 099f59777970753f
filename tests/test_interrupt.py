"""Ctrl-C on a night keeps everything measured and prints how to resume; resume finishes the rest without
redoing it, and ends the night exactly as an uninterrupted one: verdict, JUnit and reports."""
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import closing

import pandas as pd
import pytest

from benchmarks.models import mlp_model
from tests.farm_fixtures import devices_yaml, local_agents

pytestmark = pytest.mark.slow
MATRIX = """models: [a.onnx, b.onnx, c.onnx, d.onnx]
recipes: [fp32]
targets: [{pool: bench}]
measure: {warmup_seconds: 0.1, min_seconds: 1.0}
"""


def _rows(db, sql):
    with closing(sqlite3.connect(db)) as con:
        return con.execute(sql).fetchall()


def _wait_for_a_result(db, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if db.exists() and _rows(db, "SELECT COUNT(*) FROM results")[0][0] >= 1:
                return
        except sqlite3.OperationalError:  # the controller is still creating the schema
            pass
        time.sleep(0.1)
    pytest.fail("no result was stored before the deadline")


def test_ctrl_c_keeps_results_and_resume_finishes_the_run(tmp_path):
    with local_agents(tmp_path, 1) as agents:
        devices_yaml(tmp_path / "devices.yaml", agents, ["board-a"])
        (tmp_path / "nightly.yaml").write_text(MATRIX)
        for name in "abcd":
            mlp_model(tmp_path / f"{name}.onnx", width=128, depth=2)
        db = tmp_path / "r.sqlite"
        common = ["--db", str(db), "--cache-dir", str(tmp_path / "cache")]
        proc = subprocess.Popen([sys.executable, "-m", "edgefarm.controller", "nightly", "--matrix",
                                 str(tmp_path / "nightly.yaml"), "--devices", str(tmp_path / "devices.yaml"),
                                 "--out", str(tmp_path / "out"), *common], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        _wait_for_a_result(db, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        (run_id, status), = _rows(db, "SELECT id, status FROM runs")
        assert status == "interrupted"
        kept = dict(_rows(db, "SELECT job_id, samples_ns FROM results"))
        assert 1 <= len(kept) < 4
        assert f"finish it with: edgefarm resume {run_id} --db {db}" in err
        resumed = subprocess.run([sys.executable, "-m", "edgefarm.controller", "resume", run_id, *common,
                                  "--out", str(tmp_path / "resumed")], capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        after = dict(_rows(db, "SELECT job_id, samples_ns FROM results"))
        assert len(after) == 4 and all(after[job] == blob for job, blob in kept.items())
        clean_db = tmp_path / "clean.sqlite"
        clean = subprocess.run([sys.executable, "-m", "edgefarm.controller", "nightly", "--matrix",
                                str(tmp_path / "nightly.yaml"), "--devices", str(tmp_path / "devices.yaml"),
                                "--out", str(tmp_path / "clean"), "--db", str(clean_db), "--cache-dir",
                                str(tmp_path / "cache")], capture_output=True, text=True, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
    # A resumed night ends as an uninterrupted one: the same verdict, JUnit cases and report rows.
    assert _rows(db, f"SELECT verdict FROM runs WHERE id = '{run_id}'") == _rows(clean_db, "SELECT verdict FROM runs")
    assert _rows(db, f"SELECT verdict FROM runs WHERE id = '{run_id}'") == [("good",)]
    assert _junit_cases(tmp_path / "resumed") == _junit_cases(tmp_path / "clean")
    assert len(_junit_cases(tmp_path / "resumed")) == 4
    assert _report_rows(tmp_path / "resumed") == _report_rows(tmp_path / "clean")
    assert "planned 4, measured 4, not measured 0, regressed 0: ok" in resumed.stdout


def _junit_cases(out):
    suite = ET.parse(out / "junit.xml").getroot()
    return sorted((case.get("classname"), case.get("name"), tuple(child.tag for child in case))
                  for case in suite.iter("testcase"))


def _report_rows(out):
    frame = pd.read_csv(out / "report.csv")
    return sorted(map(tuple, frame[["model", "variant", "device", "backend"]].values.tolist())), list(frame.columns)
