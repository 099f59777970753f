"""The warm-up and measuring loops' stop rule, driven by a fake clock that ticks exactly.

Each fake engine run moves the clock by RUN_NS and nothing else does, so every count, sample,
wall time and progress report below is exact: no test here depends on how fast this machine is.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgefarm.agent.backends.base import Timing
from edgefarm.agent.measure import MeasurePolicy, WarmupPolicy, measure, measure_streams, warm_up

RUN_NS = 10_000_000          # every fake inference takes exactly 10 ms
COMPUTE_NS = 7_000_000       # of which the accelerator computes 7 ms (separable engines)
FEEDS = [{"input": np.zeros(1, np.float32)}]


class FakeClock:
    """A perf_counter_ns stand-in that moves only when a fake engine runs."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns


class TickingEngine:
    """Runs in exactly RUN_NS of fake time."""

    compute_separable = False

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.runs = 0

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.clock.now_ns += RUN_NS
        self.runs += 1
        return []

    def close(self) -> None:
        pass


class SeparableTickingEngine(TickingEngine):
    compute_separable = True

    def run_timed(self, feeds: dict[str, np.ndarray]) -> Timing:
        self.run(feeds)
        return Timing(host_ns=RUN_NS, compute_ns=COMPUTE_NS)


def policy(min_iterations: int = 10, min_seconds: float = 1.0, max_iterations: int = 100_000,
           max_seconds: float = 60.0) -> MeasurePolicy:
    return MeasurePolicy(min_iterations, min_seconds, max_iterations, max_seconds)


@pytest.mark.parametrize(("rule", "stop_policy", "iterations", "stopped_by"), [
    ("min_seconds is the last minimum met", policy(min_iterations=10, min_seconds=1.0), 100, "min-time"),
    ("min_iterations is the last minimum met", policy(min_iterations=200, min_seconds=1.0), 200, "min-time"),
    ("max_iterations caps before min_seconds", policy(min_seconds=1.0, max_iterations=30), 30, "max-iterations"),
    ("max_seconds caps before min_iterations", policy(min_iterations=1000, min_seconds=0.1, max_seconds=0.5), 50,
     "max-seconds"),
    ("both minimums met on the same run", policy(min_iterations=100, min_seconds=1.0), 100, "min-time"),
])
def test_measure_stops_at_the_exact_iteration(rule: str, stop_policy: MeasurePolicy, iterations: int,
                                              stopped_by: str) -> None:
    """stopped_by names the rule: a cap that cut a run short of --min-seconds is never silent."""
    clock = FakeClock()
    engine = TickingEngine(clock)
    m = measure(engine, FEEDS, stop_policy, clock=clock)
    assert m.stopped_by == stopped_by, rule
    assert m.samples_ns == [RUN_NS] * iterations, rule
    assert engine.runs == iterations
    assert m.wall_seconds == iterations * RUN_NS / 1e9
    assert (m.compute_samples_ns, m.warmup_iterations) == ([], 0)


def test_measure_reports_progress_every_half_second_of_the_minimum() -> None:
    clock = FakeClock()
    reports: list[tuple[str, float]] = []
    m = measure(TickingEngine(clock), FEEDS, policy(min_seconds=2.0), lambda phase, frac: reports.append((phase, frac)),
                clock=clock)
    assert len(m.samples_ns) == 200
    assert reports == [("measure", 0.25), ("measure", 0.5), ("measure", 0.75)]  # at 2.0 s it stops instead


def test_separable_engine_keeps_host_and_compute_samples() -> None:
    clock = FakeClock()
    m = measure(SeparableTickingEngine(clock), FEEDS, policy(min_seconds=0.5), clock=clock)
    assert m.samples_ns == [RUN_NS] * 50
    assert m.compute_samples_ns == [COMPUTE_NS] * 50
    assert m.wall_seconds == 0.5


def test_one_stream_in_throughput_mode_stops_like_measure() -> None:
    clock = FakeClock()
    m = measure_streams([TickingEngine(clock)], FEEDS, policy(min_seconds=0.3), clock=clock)
    assert m.samples_ns == [RUN_NS] * 30
    assert m.wall_seconds == 0.3


@pytest.mark.parametrize(("warmup", "iterations"), [
    (WarmupPolicy(min_iterations=10, min_seconds=0.2), 20),   # the time is the last minimum met
    (WarmupPolicy(min_iterations=30, min_seconds=0.2), 30),   # the count is
    (WarmupPolicy(min_iterations=1, min_seconds=0.0), 1),     # at least one run, even with no time asked
])
def test_warm_up_runs_until_both_minimums_are_met(warmup: WarmupPolicy, iterations: int) -> None:
    clock = FakeClock()
    engine = TickingEngine(clock)
    assert warm_up(engine, FEEDS, warmup, clock=clock) == iterations
    assert engine.runs == iterations and clock.now_ns == iterations * RUN_NS
