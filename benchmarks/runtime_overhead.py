"""P1 for ExecuTorch and OpenVINO: the agent's reported median ÷ a bare loop of the same runtime's own
Python API on the same model, input and thread count, interleaved ABBA in the same run.

P1-executorch-<model>: the et-fp32 program; the bare loop is Method.execute([tensor]) on a program the
  runtime loaded itself (the input tensor made once, as an application that keeps its input buffer does),
  its outputs read as numpy arrays: what ONNX Runtime's run() and LiteRT's get_tensor() hand back too.
P1-openvino-<model>: the fp32 ONNX model compiled for the CPU at the agent's settings (1 thread, LATENCY,
  f32); the bare loop is InferRequest.infer(feeds).

Each bare loop runs in a fresh process that imports only numpy and its runtime (benchmarks/bare_loops.py),
as the agent's worker does for such a job. In this process it would not be a fair reference: importing
onnxruntime (which the harness does) slows OpenVINO's CPU plugin by ~17 % on this machine (0.23 -> 0.27 ms
on mobilenet-v2), and the first runs here measured the agent "15 % faster" than its reference.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.bare_loops import bare_executorch_ms, bare_openvino_ms
from benchmarks.figures import Figure
from benchmarks.harness_overhead import THREADS, agent_median_ms, interleaved, local_client
from edgefarm.agent.digest import sha256_file

GOAL = "<= 1.05"
REPO = Path(__file__).resolve().parent.parent
BARE_TIMEOUT_S = 300


def in_fresh_process(bare: Callable[[Path], float], path: Path) -> float:
    """bare(path) in a new interpreter that imports benchmarks.bare_loops alone (not this run's main module,
    as a multiprocessing child would)."""
    code = (f"import sys, pathlib; from benchmarks.bare_loops import {bare.__name__} as bare; "
            "print(bare(pathlib.Path(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                          cwd=REPO, timeout=BARE_TIMEOUT_S)
    return float(done.stdout.strip().splitlines()[-1])


def runtime_overhead_figure(runtime: str, model_id: str, path: Path, bare: Callable[[Path], float]) -> Figure:
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        bare_ms, agent_ms = interleaved(lambda: in_fresh_process(bare, path),
                                        lambda: agent_median_ms(client, sha, backend=runtime))
    b, a = statistics.median(bare_ms), statistics.median(agent_ms)
    loop = "Method.execute()" if runtime == "executorch" else "InferRequest.infer()"
    return Figure(f"P1-{runtime}-{model_id}", f"harness overhead, {model_id} ({runtime})", a / b, "x",
                  f"agent p50 {a:.4f} ms / bare {loop} p50 {b:.4f} ms, {THREADS} thread, {path.suffix}", GOAL)


def runtime_figures(cache: Path, model: str = "mobilenet-v2") -> list[Figure]:
    from edgefarm.compressors.models import get_model
    from edgefarm.compressors.recipes import compress

    bundle = get_model(model, cache)
    program = compress(bundle, "et-fp32", cache).path
    return [runtime_overhead_figure("executorch", model, program, bare_executorch_ms),
            runtime_overhead_figure("openvino", model, bundle.onnx_path, bare_openvino_ms)]
