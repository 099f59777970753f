"""P1 for LiteRT: the agent's reported median ÷ a bare set_tensor/invoke/get_tensor loop's
median on the same real .tflite model and thread count, interleaved in the same run."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.figures import Figure
from benchmarks.harness_overhead import MEASURE_S, THREADS, WARMUP_S, agent_median_ms, interleaved, local_client
from edgefarm.agent.backends.litert import _require_runtime
from edgefarm.agent.digest import sha256_file


def bare_invoke_median_ms(path: Path, shape: tuple[int, ...] | None = None) -> float:
    interpreter = _require_runtime().interpreter(model_path=str(path), num_threads=THREADS)
    if shape is not None:  # a dynamic signature input, resized as the agent does it
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(shape))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = np.random.default_rng(0).random(inp["shape"], dtype=np.float32).astype(inp["dtype"])
    clock = time.perf_counter_ns
    end = clock() + int(WARMUP_S * 1e9)
    while clock() < end:
        _invoke(interpreter, inp, out, x)
    samples, end = [], clock() + int(MEASURE_S * 1e9)
    while clock() < end:
        t0 = clock()
        _invoke(interpreter, inp, out, x)
        samples.append(clock() - t0)
    return float(np.median(samples)) / 1e6


def _invoke(interpreter, inp: dict, out: dict, x: np.ndarray) -> np.ndarray:
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def litert_overhead_figure(model_id: str, path: Path, shape: tuple[int, ...] | None = None) -> Figure:
    """shape: the job's shape for the model's one input, when its signature is dynamic."""
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        shapes = {_input_name(path): shape} if shape else None
        bare, agent = interleaved(lambda: bare_invoke_median_ms(path, shape),
                                  lambda: agent_median_ms(client, sha, backend="litert", shapes=shapes))
    b, a = statistics.median(bare), statistics.median(agent)
    at = f", at {'x'.join(map(str, shape))}" if shape else ""
    return Figure(f"P1-tflite-{model_id}", f"harness overhead, {model_id} (LiteRT)", a / b, "x",
                  f"agent p50 {a:.4f} ms / bare invoke() p50 {b:.4f} ms, {THREADS} thread{at}", "<= 1.05")


def _input_name(path: Path) -> str:
    return _require_runtime().interpreter(model_path=str(path)).get_input_details()[0]["name"]
