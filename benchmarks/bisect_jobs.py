"""B1: automatic bisection (`edgefarm bisect`) over 32 artifacts, on real measurements.

32 "checkpoints" of a 64x2 MLP (different weights, same speed) and the same 32 with three
MatMul-by-identity layers added (the same outputs, ~30 % slower) are each measured RUNS times
through a real local agent. A trial picks the regressed position k (1..31, varied across trials):
artifacts before k are the plain checkpoints, k onward the slowed ones, and the bisect logic
(controller/nightly/bisect.py: Search, with the default 5 % threshold and 3 rounds) runs on the
recorded runs, each job it asks for taking the next recorded run of that artifact. A job beyond
the recordings ends the trial as not found. Two end-to-end bisects through Farm.bisect (the real
executor, real files) check that the replay tells the truth.
"""
from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from benchmarks.figures import Figure
from benchmarks.models import checkpoint_mlp
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import BenchmarkResult, JobSpec
from edgefarm.controller.nightly.bisect import (
    ArtifactFailed,
    BisectPolicy,
    BisectResult,
    BoardLost,
    Measurement,
    Search,
)
from edgefarm.controller.nightly.regression import BenchmarkKey, Sample, sample_of

ARTIFACTS = 32
RUNS = 3                    # recorded runs per artifact: enough for a step's measure-more rounds
TRIALS = 310                # 10 per regressed position
NOOP_LAYERS = 3
WARMUP_S, MEASURE_S = 0.05, 0.3
KEY = BenchmarkKey("ckpt", "as-is", "local", "onnxruntime")


def record(root: Path) -> dict[tuple[bool, int], list[Sample]]:
    """(slowed?, position) -> its recorded runs, interleaved so a neighbour's load spreads over both kinds."""
    paths = {(slow, i): checkpoint_mlp(root / f"{'slow' if slow else 'ckpt'}-{i:02d}.onnx", i,
                                       NOOP_LAYERS if slow else 0)
             for i in range(ARTIFACTS) for slow in (False, True)}
    runs: dict[tuple[bool, int], list[Sample]] = {key: [] for key in paths}
    with LocalAgent(root / "agent") as local:
        client = AgentClient("local", local.address)
        client.connect()
        shas = {key: sha256_file(path) for key, path in paths.items()}
        for key, path in paths.items():
            client.ensure_uploaded(path, shas[key])
        for _ in range(RUNS):
            for key in paths:
                runs[key].append(_measure_once(client, shas[key]))
        client.close()
    return runs


def _measure_once(client: AgentClient, sha: str) -> Sample:
    spec = JobSpec(job_id="", artifact_sha256=sha, backend="onnxruntime", threads=1, batch_size=1,
                   warmup_iterations=10, warmup_seconds=WARMUP_S, min_iterations=100, min_seconds=MEASURE_S)
    final = list(client.benchmark(spec))[-1]
    if not isinstance(final, BenchmarkResult):
        raise RuntimeError(f"agent failed: {final.message}")
    sample = sample_of(KEY, final)
    return Sample(sample.key, sample.samples_ns, {**sample.fingerprint, "board": "local"})


class Replay:
    """The Measurer of a trial: the next recorded run of the artifact asked for."""

    def __init__(self, runs: Mapping[tuple[bool, int], Sequence[Sample]], first_bad: int, rng: random.Random) -> None:
        self.runs, self.first_bad = runs, first_bad
        self.order = {key: rng.sample(range(len(recorded)), len(recorded)) for key, recorded in runs.items()}
        self.taken: dict[int, int] = {}

    def measure(self, index: int) -> Measurement:
        key = (index >= self.first_bad, index)
        taken = self.taken.get(index, 0)
        if taken >= len(self.runs[key]):
            raise ArtifactFailed(f"artifact {index}: no recorded run left")
        self.taken[index] = taken + 1
        return Measurement(index, "local", f"replay-{index}-{taken}", self.runs[key][self.order[key][taken]])

    def next_board(self, lost: BoardLost) -> str | None:
        return None


def trials(runs: Mapping[tuple[bool, int], Sequence[Sample]], count: int = TRIALS) -> list[tuple[int, BisectResult]]:
    rng = random.Random(0)
    names = [f"ckpt-{i:02d}" for i in range(ARTIFACTS)]
    out = []
    for trial in range(count):
        first_bad = 1 + trial % (ARTIFACTS - 1)  # every position equally often
        out.append((first_bad, Search(names, Replay(runs, first_bad, rng), BisectPolicy(), 0, ARTIFACTS - 1).run()))
    return out


def end_to_end(root: Path, positions: Sequence[int]) -> list[tuple[int, int | None, int]]:
    """(regressed position, position found, jobs) of real bisects through Farm.bisect on real files."""
    import edgefarm

    done = []
    for first_bad in positions:
        folder = root / f"e2e-{first_bad}"
        folder.mkdir()
        for i in range(ARTIFACTS):
            checkpoint_mlp(folder / f"ckpt-{i:02d}.onnx", i, NOOP_LAYERS if i >= first_bad else 0)
        farm = edgefarm.Farm.local(db=root / "e2e.sqlite", cache_dir=root / "cache")
        found = farm.bisect(folder, measure=edgefarm.Measure(warmup_seconds=WARMUP_S, min_seconds=MEASURE_S),
                            progress=False)
        done.append((first_bad, found.artifacts.index(found.first_bad) if found.first_bad else None, found.jobs))
    return done


def bisect_figures(cache_dir: Path) -> list[Figure]:
    """cache_dir is unused: every figure comes from measurements taken in this same call."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        runs = record(Path(tmp))
        e2e = end_to_end(Path(tmp), (5, 27))
    results = trials(runs)
    slowdown = np.median([np.median(r.samples_ns) for (slow, _), rs in runs.items() if slow for r in rs]) / \
        np.median([np.median(r.samples_ns) for (slow, _), rs in runs.items() if not slow for r in rs])
    conditions = (f"{2 * ARTIFACTS} artifacts x {RUNS} real runs of {MEASURE_S:g} s through a local agent, slowed "
                  f"ones {slowdown - 1:+.0%}; {len(results)} trials replayed on the recorded runs, regressed position "
                  f"1..{ARTIFACTS - 1} varied across trials; load average {load_before:.1f}-{os.getloadavg()[0]:.1f} "
                  f"on {os.cpu_count()} CPUs; end to end through Farm.bisect (found/jobs): "
                  + ", ".join(f"k={k}: {found}/{jobs}" for k, found, jobs in e2e))
    return [_jobs_figure(results, conditions), _correct_figure(results, conditions)]


def _jobs_figure(results: list[tuple[int, BisectResult]], conditions: str) -> Figure:
    jobs = [len(r.measured) for _, r in results]
    return Figure("B1-jobs", "measured jobs to find the first regressed of 32", float(np.mean(jobs)), "jobs",
                  f"mean over trials; median {np.median(jobs):g}, max {max(jobs)}, "
                  f"{sum(j > 7 for j in jobs)} trials over 7 (measure-more rounds); {conditions}", "<= 7")


def _correct_figure(results: list[tuple[int, BisectResult]], conditions: str) -> Figure:
    right = sum(r.first_bad == k for k, r in results)
    wrong = [f"k={k}: {r.status.value} {r.first_bad}" for k, r in results if r.first_bad != k]
    return Figure("B1-correct", "bisections that found the right artifact", 100 * right / len(results), "%",
                  f"{right}/{len(results)}" + (f", misses: {'; '.join(wrong[:5])}" if wrong else "")
                  + f"; {conditions}", ">= 100")
