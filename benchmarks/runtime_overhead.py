"""P1 for ExecuTorch and OpenVINO: the agent's reported median ÷ a bare loop of the same runtime's own
Python API on the same model, input and thread count, interleaved ABBA in the same run.

P1-executorch-<model>: the et-fp32 program; the bare loop is Method.execute([tensor]) on a program the
  runtime loaded itself (the input tensor made once, as an application that keeps its input buffer does),
  its outputs read as numpy arrays: what ONNX Runtime's run() and LiteRT's get_tensor() hand back too.
P1-openvino-<model>: the fp32 ONNX model compiled for the CPU at the agent's settings (1 thread, LATENCY,
  f32); the bare loop is InferRequest.infer(feeds).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.figures import Figure
from benchmarks.harness_overhead import MEASURE_S, THREADS, WARMUP_S, agent_median_ms, interleaved, local_client
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.digest import sha256_file

GOAL = "<= 1.05"


def _timed_median_ms(call: Callable[[], object]) -> float:
    clock = time.perf_counter_ns
    end = clock() + int(WARMUP_S * 1e9)
    while clock() < end:
        call()
    samples, end = [], clock() + int(MEASURE_S * 1e9)
    while clock() < end:
        t0 = clock()
        call()
        samples.append(clock() - t0)
    return float(np.median(samples)) / 1e6


def bare_executorch_ms(path: Path) -> float:
    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(THREADS)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    shape = list(method.metadata.input_tensor_meta(0).sizes())
    x = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
    execute = method.execute
    return _timed_median_ms(lambda: [output.numpy() for output in execute([x])])


def bare_openvino_ms(path: Path) -> float:
    from edgefarm.agent.backends import openvino as ov_backend

    config = ov_backend.compile_config(BackendOptions(threads=THREADS))   # the agent's own settings
    model = ov_backend._reshaped(ov_backend.read_model(str(path)), BackendOptions())
    compiled = ov_backend._core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    port = compiled.inputs[0]
    shape = [d.get_length() for d in port.get_partial_shape()]
    feeds = {port.get_any_name(): np.random.default_rng(0).random(shape, dtype=np.float32)}
    infer = request.infer
    return _timed_median_ms(lambda: infer(feeds))


def runtime_overhead_figure(runtime: str, model_id: str, path: Path, bare: Callable[[Path], float]) -> Figure:
    with tempfile.TemporaryDirectory() as cache, local_client(Path(cache)) as client:
        sha = sha256_file(path)
        client.ensure_uploaded(path, sha)
        bare_ms, agent_ms = interleaved(lambda: bare(path), lambda: agent_median_ms(client, sha, backend=runtime))
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
