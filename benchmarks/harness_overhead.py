"""P1: the agent's reported median ÷ a bare InferenceSession.run loop's median,
same model, inputs and thread settings, measured in the same run, interleaved."""
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agent.backends import onnxruntime as ort_backend
from agent.backends.base import BackendOptions
from agent.measure import make_inputs
from benchmarks.figures import Figure
from controller.client import AgentClient, sha256_file
from controller.local_agent import LocalAgent
from protos import agent_pb2 as pb

THREADS = 1
WARMUP_S, MEASURE_S, ROUNDS = 0.5, 2.0, 4


def bare_median_ms(path: Path) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    engine = ort_backend.load(str(path), BackendOptions(threads=THREADS))  # only for the input specs
    feeds = make_inputs(engine.inputs, 1, seed=0)  # the agent's own input generator
    engine.close()
    clock, run = time.perf_counter_ns, session.run
    end = clock() + int(WARMUP_S * 1e9)
    while clock() < end:
        run(None, feeds)
    samples, end = [], clock() + int(MEASURE_S * 1e9)
    while clock() < end:
        t0 = clock()
        run(None, feeds)
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


def agent_median_ms(client: AgentClient, sha: str, backend: str = "onnxruntime") -> float:
    spec = pb.BenchmarkSpec(artifact_sha256=sha, backend=backend, threads=THREADS, batch_size=1,
                            warmup=pb.WarmupPolicy(min_iterations=10, min_seconds=WARMUP_S),
                            measure=pb.MeasurePolicy(min_iterations=10, min_seconds=MEASURE_S))
    final = list(client.benchmark(spec))[-1]
    if not final.HasField("result"):
        raise RuntimeError(f"agent failed: {final.failure.message}")
    return final.result.latency.p50_ms


def interleaved(bare: Callable[[], float], agent: Callable[[], float]) -> tuple[list[float], list[float]]:
    """ABBA order over the rounds, so drift on the machine and order effects hit both alike."""
    bare_ms, agent_ms = [], []
    for i in range(ROUNDS):
        steps = [(bare, bare_ms), (agent, agent_ms)]
        for measure, into in (steps if i % 2 == 0 else steps[::-1]):
            into.append(measure())
    return bare_ms, agent_ms


def overhead_figure(model_id: str, path: Path, goal: str) -> Figure:
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        bare, agent = interleaved(lambda: bare_median_ms(path), lambda: agent_median_ms(client, sha))
    b, a = statistics.median(bare), statistics.median(agent)
    return Figure(f"P1-{model_id}", f"harness overhead, {model_id} (ONNX Runtime)", a / b, "x",
                  f"agent p50 {a:.4f} ms / bare run() p50 {b:.4f} ms, {THREADS} thread", goal)
