"""R-cv: repeatability of one artifact over repeated runs on the local agent.
P3: a re-run of an unchanged job rebuilds no engine and uploads no bytes, as counted by the agent."""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.figures import Figure
from benchmarks.harness_overhead import agent_median_ms, local_client
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.records import BenchmarkResult
from edgefarm.controller.config.inventory import BackendSettings
from edgefarm.controller.planning.run_plan import MeasureSettings, build_spec
from edgefarm.controller.results.store import JobRecord

REPEATS = 10


def repeatability_figure(model_id: str, path: Path) -> Figure:
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        medians = [agent_median_ms(client, sha) for _ in range(REPEATS)]
    cv = statistics.stdev(medians) / statistics.mean(medians) * 100
    return Figure("R-cv", f"CV of medians over {REPEATS} runs, {model_id}", cv, "%",
                  f"medians {min(medians):.4f}..{max(medians):.4f} ms, each a fresh worker process", "<= 2")


def rerun_figures(path: Path) -> list[Figure]:
    """Run the same job twice through the controller's client; read the agent's own counters."""
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        first = _ship_and_run(client, path)
        second = _ship_and_run(client, path)
    builds = second.engine_builds - first.engine_builds
    reupload = second.bytes_received - first.bytes_received
    ref = (f"first run: {first.bytes_received} bytes received, {first.engine_builds} engine build(s); "
           f"re-run: {second.engine_cache_hits - first.engine_cache_hits} cache hit(s)")
    return [Figure("P3-rebuilds", "engines rebuilt on an unchanged re-run", builds, "count", ref, "<= 0"),
            Figure("P3-reupload-bytes", "bytes re-uploaded on an unchanged re-run", reupload, "bytes", ref, "<= 0")]


def _ship_and_run(client: AgentClient, path: Path):
    sha = sha256_file(path)
    client.ensure_uploaded(path, sha)
    job = JobRecord("p3", "bench", path.stem, "fp32", "local", "onnxruntime", sha)
    measure = MeasureSettings(warmup_seconds=0.05, min_seconds=0.2)
    final = list(client.benchmark(build_spec(job, measure, BackendSettings("onnxruntime"), eval_sha="")))[-1]
    if not isinstance(final, BenchmarkResult):
        raise RuntimeError(f"agent failed: {final.message}")
    return client.health()
