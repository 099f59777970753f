"""Bare loops of a runtime's own Python API: the references of the P1 figures for ExecuTorch and OpenVINO.

Kept apart so a fresh process that runs one imports numpy and that runtime only (never onnxruntime or grpc,
which the harness imports): see benchmarks/runtime_overhead.py.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgefarm.agent.backends.base import BackendOptions

# The harness's own settings (benchmarks/harness_overhead.py), repeated here so importing this module
# does not import the harness (and onnxruntime with it).
THREADS = 1
WARMUP_S, MEASURE_S = 0.5, 2.0


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
