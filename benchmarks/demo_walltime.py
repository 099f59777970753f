"""P5: wall time of `edgefarm demo`, split into phases; cold (trains the model) and cached."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.figures import Figure

# Uploads happen inside "measure": the one executor ships each artifact just before its job runs.
PHASES = ("train", "compress", "measure", "report")


def run_demo(cache_dir: Path, workdir: Path) -> tuple[float, dict[str, float]]:
    timings = workdir / "timings.json"
    cmd = [sys.executable, "-m", "edgefarm.controller", "demo", "--out", str(workdir / "out"), "--db",
           str(workdir / "results.sqlite"), "--cache-dir", str(cache_dir), "--timings-json", str(timings)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads(timings.read_text())


def _split(wall: float, phases: dict[str, float]) -> str:
    parts = [f"{p} {phases.get(p, 0.0):.1f}s" for p in PHASES]
    return ", ".join(parts) + f", startup/other {wall - sum(phases.values()):.1f}s"


def demo_figures(cache_dir: Path) -> list[Figure]:
    with tempfile.TemporaryDirectory() as cold_dir, tempfile.TemporaryDirectory() as warm_dir:
        cold_wall, cold = run_demo(cache_dir, Path(cold_dir))
        warm_wall, warm = run_demo(cache_dir, Path(warm_dir))
    outside = (warm_wall - warm.get("measure", 0.0)) / warm_wall
    return [
        Figure("P5", "edgefarm demo wall time, first run (trains)", cold_wall, "s",
               _split(cold_wall, cold), "<= 60"),
        Figure("P5-cached", "edgefarm demo wall time, model cached", warm_wall, "s",
               _split(warm_wall, warm), "<= 60"),
        Figure("P5-overhead", "share of cached demo time outside measuring", outside, "ratio",
               f"{warm_wall - warm.get('measure', 0.0):.1f}s of {warm_wall:.1f}s", "<= 0.10"),
    ]
