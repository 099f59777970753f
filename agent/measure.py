"""The measuring loop of DESIGN.md: warm up by count and time, then measure until
both a minimum count and a minimum duration are met, capped by a maximum."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from agent.backends.base import Engine, TensorSpec

ProgressFn = Callable[[str, float], None]
_PROGRESS_EVERY_NS = 500_000_000


@dataclass(frozen=True)
class WarmupPolicy:
    min_iterations: int = 10
    min_seconds: float = 0.2


@dataclass(frozen=True)
class MeasurePolicy:
    min_iterations: int = 10
    min_seconds: float = 3.0
    max_iterations: int = 100_000
    max_seconds: float = 60.0


@dataclass(frozen=True)
class Measurement:
    samples_ns: list[int]               # end-to-end host time per iteration
    compute_samples_ns: list[int]       # empty when the engine cannot separate compute
    wall_seconds: float
    warmup_iterations: int


def make_inputs(specs: Sequence[TensorSpec], batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic synthetic inputs; dynamic dims take the batch size (first) or 1."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = [batch_size if (d < 0 and i == 0) else max(d, 1) for i, d in enumerate(spec.shape)]
        feeds[spec.name] = _random_tensor(rng, shape, spec.dtype)
    return feeds


def _random_tensor(rng: np.random.Generator, shape: list[int], dtype: str) -> np.ndarray:
    if dtype.startswith("float"):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype in ("int8", "uint8"):  # quantized image data: the whole range
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
    # int32/int64 inputs are indices (token ids) or masks: 1 is valid for both, so a text model
    # runs on in-vocabulary tokens with a full attention mask.
    return np.ones(shape, dtype=dtype if dtype != "bool" else bool)


def warm_up(engine: Engine, feeds: dict[str, np.ndarray], policy: WarmupPolicy) -> int:
    clock, run = time.perf_counter_ns, engine.run
    end = clock() + int(policy.min_seconds * 1e9)
    n = 0
    while n < policy.min_iterations or clock() < end:
        run(feeds)
        n += 1
    return n


def measure(engine: Engine, feeds: dict[str, np.ndarray], policy: MeasurePolicy,
            progress: ProgressFn | None = None) -> Measurement:
    if engine.compute_separable:
        return _measure_separable(engine, feeds, policy, progress)
    clock, run = time.perf_counter_ns, engine.run
    samples: list[int] = []
    stop = _StopRule(policy, clock(), progress)
    while True:
        t0 = clock()
        run(feeds)
        t1 = clock()
        samples.append(t1 - t0)
        if stop.reached(len(samples), t1):
            break
    return Measurement(samples, [], (clock() - stop.start) / 1e9, 0)


def _measure_separable(engine: Engine, feeds: dict[str, np.ndarray], policy: MeasurePolicy,
                       progress: ProgressFn | None) -> Measurement:
    clock = time.perf_counter_ns
    host: list[int] = []
    compute: list[int] = []
    stop = _StopRule(policy, clock(), progress)
    while True:
        timing = engine.run_timed(feeds)
        host.append(timing.host_ns)
        compute.append(timing.compute_ns or 0)
        if stop.reached(len(host), clock()):
            break
    return Measurement(host, compute, (clock() - stop.start) / 1e9, 0)


class _StopRule:
    """Both minimums met, or either maximum hit; reports progress at most every 0.5 s."""

    def __init__(self, policy: MeasurePolicy, start_ns: int, progress: ProgressFn | None) -> None:
        self.start = start_ns
        self._min_n, self._max_n = policy.min_iterations, policy.max_iterations
        self._min_end = start_ns + int(policy.min_seconds * 1e9)
        self._max_end = start_ns + int(policy.max_seconds * 1e9)
        self._span = max(self._min_end - start_ns, 1)
        self._progress = progress
        self._next_report = start_ns + _PROGRESS_EVERY_NS

    def reached(self, n: int, now: int) -> bool:
        if (n >= self._min_n and now >= self._min_end) or n >= self._max_n or now >= self._max_end:
            return True
        if self._progress is not None and now >= self._next_report:
            self._next_report = now + _PROGRESS_EVERY_NS
            self._progress("measure", min((now - self.start) / self._span, 1.0))
        return False


def measure_streams(engines: Sequence[Engine], feeds: dict[str, np.ndarray], policy: MeasurePolicy,
                    progress: ProgressFn | None = None) -> Measurement:
    """Throughput mode: one thread per engine, all running at once, until the shared stop
    rule is met. Latencies are per request under that load; FPS counts every stream."""
    clock = time.perf_counter_ns
    per_stream: list[list[int]] = [[] for _ in engines]
    stop = _StopRule(policy, clock(), progress)
    done = threading.Event()
    lock = threading.Lock()
    total = [0]

    def stream(engine: Engine, samples: list[int]) -> None:
        run = engine.run
        while not done.is_set():
            t0 = clock()
            run(feeds)
            t1 = clock()
            samples.append(t1 - t0)
            with lock:  # the stop rule and the count are shared; outside the timed region
                total[0] += 1
                if stop.reached(total[0], t1):
                    done.set()

    threads = [threading.Thread(target=stream, args=(e, s), daemon=True) for e, s in zip(engines, per_stream)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = [x for s in per_stream for x in s]
    return Measurement(samples, [], (clock() - stop.start) / 1e9, 0)
