"""The measuring loop of DESIGN.md: warm up by count and time, then measure until
both a minimum count and a minimum duration are met, capped by a maximum."""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Sequence

import numpy as np

from edgefarm.agent.backends.base import Engine

ProgressFn = Callable[[str, float], None]
Feeds = Dict[str, np.ndarray]
# A reading in ns. Every loop binds it to a local, so the default costs what calling
# time.perf_counter_ns directly costs; tests pass a fake that ticks exactly.
Clock = Callable[[], int]
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
    stopped_by: str = ""                # which rule ended it: min-time, max-iterations or max-seconds


def warm_up(engine: Engine, samples: Sequence[Feeds], policy: WarmupPolicy,
            clock: Clock = time.perf_counter_ns) -> int:
    run, next_feeds = engine.run, itertools.cycle(samples).__next__
    end = clock() + int(policy.min_seconds * 1e9)
    n = 0
    while n < policy.min_iterations or clock() < end:
        run(next_feeds())
        n += 1
    return n


def measure(engine: Engine, samples: Sequence[Feeds], policy: MeasurePolicy,
            progress: ProgressFn | None = None, clock: Clock = time.perf_counter_ns) -> Measurement:
    """Time one engine on the given feeds, cycling through them (one feed: the same one every time)."""
    if engine.compute_separable:
        return _measure_separable(engine, samples, policy, progress, clock)
    run, next_feeds = engine.run, itertools.cycle(samples).__next__
    times: list[int] = []
    stop = _StopRule(policy, clock(), progress)
    while True:
        feeds = next_feeds()  # outside the timed region
        t0 = clock()
        run(feeds)
        t1 = clock()
        times.append(t1 - t0)
        if stop.reached(len(times), t1):
            break
    return Measurement(times, [], (clock() - stop.start) / 1e9, 0, stop.stopped_by)


def _measure_separable(engine: Engine, samples: Sequence[Feeds], policy: MeasurePolicy,
                       progress: ProgressFn | None, clock: Clock) -> Measurement:
    next_feeds = itertools.cycle(samples).__next__
    host: list[int] = []
    compute: list[int] = []
    stop = _StopRule(policy, clock(), progress)
    while True:
        timing = engine.run_timed(next_feeds())
        host.append(timing.host_ns)
        compute.append(timing.compute_ns or 0)
        if stop.reached(len(host), clock()):
            break
    return Measurement(host, compute, (clock() - stop.start) / 1e9, 0, stop.stopped_by)


class _StopRule:
    """Both minimums met, or either maximum hit; reports progress at most every 0.5 s. stopped_by
    says which, so a cap that cut a run short of its minimum time is never silent."""

    def __init__(self, policy: MeasurePolicy, start_ns: int, progress: ProgressFn | None) -> None:
        self.start = start_ns
        self._min_n, self._max_n = policy.min_iterations, policy.max_iterations
        self._min_end = start_ns + int(policy.min_seconds * 1e9)
        self._max_end = start_ns + int(policy.max_seconds * 1e9)
        self._span = max(self._min_end - start_ns, 1)
        self._progress = progress
        self._next_report = start_ns + _PROGRESS_EVERY_NS
        self.stopped_by = ""

    def reached(self, n: int, now: int) -> bool:
        if (n >= self._min_n and now >= self._min_end) or n >= self._max_n or now >= self._max_end:
            self.stopped_by = _stop_reason(n >= self._min_n and now >= self._min_end, now >= self._max_end)
            return True
        if self._progress is not None and now >= self._next_report:
            self._next_report = now + _PROGRESS_EVERY_NS
            self._progress("measure", min((now - self.start) / self._span, 1.0))
        return False


def _stop_reason(minimums_met: bool, out_of_time: bool) -> str:
    if minimums_met:
        return "min-time"
    return "max-seconds" if out_of_time else "max-iterations"


def measure_streams(engines: Sequence[Engine], samples: Sequence[Feeds], policy: MeasurePolicy,
                    progress: ProgressFn | None = None, clock: Clock = time.perf_counter_ns) -> Measurement:
    """Throughput mode: one thread per engine, all running at once, until the shared stop
    rule is met. Latencies are per request under that load; FPS counts every stream."""
    per_stream: list[list[int]] = [[] for _ in engines]
    stop = _StopRule(policy, clock(), progress)
    done = threading.Event()
    lock = threading.Lock()
    total = [0]

    def stream(engine: Engine, times: list[int]) -> None:
        run, next_feeds = engine.run, itertools.cycle(samples).__next__
        while not done.is_set():
            feeds = next_feeds()
            t0 = clock()
            run(feeds)
            t1 = clock()
            times.append(t1 - t0)
            with lock:  # the stop rule and the count are shared; outside the timed region
                total[0] += 1
                if stop.reached(total[0], t1):
                    done.set()

    threads = [threading.Thread(target=stream, args=(e, s), daemon=True) for e, s in zip(engines, per_stream)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Measurement([x for s in per_stream for x in s], [], (clock() - stop.start) / 1e9, 0, stop.stopped_by)
