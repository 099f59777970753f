"""P1: the agent's reported median ÷ a bare InferenceSession.run loop's median,
same model, inputs and thread settings, measured in the same run, interleaved.

P1-dynamic-<model>: the same on models with dynamic dims, both sides at the shape the job gives
(and on the user's own tensors where the model needs real values)."""
from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.figures import Figure
from edgefarm.agent.backends import onnxruntime as ort_backend
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.digest import sha256_file
from edgefarm.agent.inputs import load_feeds, synthetic_feeds
from edgefarm.agent.shapes import run_shape
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import BenchmarkResult, JobSpec

THREADS = 1
WARMUP_S, MEASURE_S, ROUNDS = 0.5, 2.0, 4


Shapes = dict[str, tuple[int, ...]]


def job_feeds(path: Path, shapes: Shapes | None = None, inputs_npz: Path | None = None) -> list[dict]:
    """The feeds the agent itself would use: its own shape rules, its synthetic data or the user's tensors."""
    engine = ort_backend.load(str(path), BackendOptions(threads=THREADS))  # only for the input specs
    resolved = {s.name: run_shape(s.name, s.shape, 1, (shapes or {}).get(s.name), s.dim_names) for s in engine.inputs}
    feeds = load_feeds(str(inputs_npz), engine.inputs, resolved) if inputs_npz else \
        [synthetic_feeds(engine.inputs, resolved, seed=0)]
    engine.close()
    return feeds


def bare_median_ms(path: Path, feeds: list[dict]) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    clock, run, next_feeds = time.perf_counter_ns, session.run, itertools.cycle(feeds).__next__
    end = clock() + int(WARMUP_S * 1e9)
    while clock() < end:
        run(None, next_feeds())
    samples, end = [], clock() + int(MEASURE_S * 1e9)
    while clock() < end:
        feed = next_feeds()
        t0 = clock()
        run(None, feed)
        samples.append(clock() - t0)
    return float(np.median(samples)) / 1e6


@contextmanager
def local_client(cache_dir: Path) -> Iterator[AgentClient]:
    with LocalAgent(cache_dir) as local:
        client = AgentClient("local", local.address)
        client.connect()
        try:
            yield client
        finally:
            client.close()


def agent_median_ms(client: AgentClient, sha: str, backend: str = "onnxruntime", shapes: Shapes | None = None,
                    inputs_sha: str = "") -> float:
    spec = JobSpec(job_id="", artifact_sha256=sha, backend=backend, threads=THREADS, batch_size=1,
                   warmup_iterations=10, warmup_seconds=WARMUP_S, min_iterations=10, min_seconds=MEASURE_S,
                   inputs_artifact_sha256=inputs_sha,
                   input_shapes=tuple((name, tuple(dims)) for name, dims in (shapes or {}).items()))
    final = list(client.benchmark(spec))[-1]
    if not isinstance(final, BenchmarkResult):
        raise RuntimeError(f"agent failed: {final.message}")
    return final.latency.p50_ms


def interleaved(bare: Callable[[], float], agent: Callable[[], float],
                rounds: int = ROUNDS) -> tuple[list[float], list[float]]:
    """ABBA order over the rounds, so drift on the machine and order effects hit both alike."""
    bare_ms, agent_ms = [], []
    for i in range(rounds):
        steps = [(bare, bare_ms), (agent, agent_ms)]
        for measure, into in (steps if i % 2 == 0 else steps[::-1]):
            into.append(measure())
    return bare_ms, agent_ms


def overhead_figure(model_id: str, path: Path, goal: str, shapes: Shapes | None = None,
                    inputs_npz: Path | None = None) -> Figure:
    feeds = job_feeds(path, shapes, inputs_npz)
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        inputs_sha = sha256_file(inputs_npz) if inputs_npz else ""
        if inputs_npz:
            client.ensure_uploaded(inputs_npz, inputs_sha)
        bare, agent = interleaved(lambda: bare_median_ms(path, feeds),
                                  lambda: agent_median_ms(client, sha, shapes=shapes, inputs_sha=inputs_sha))
    b, a = statistics.median(bare), statistics.median(agent)
    at = " ".join(f"{name}:{'x'.join(map(str, feed.shape)) or 'scalar'}" for name, feed in feeds[0].items())
    data = f"{len(feeds)} user sample(s)" if inputs_npz else "synthetic inputs"
    return Figure(f"P1-{model_id}", f"harness overhead, {model_id} (ONNX Runtime)", a / b, "x",
                  f"agent p50 {a:.4f} ms / bare run() p50 {b:.4f} ms, {THREADS} thread, at {at}, {data}", goal)
