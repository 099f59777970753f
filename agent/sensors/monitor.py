"""Sample a power sensor in a thread around a measurement; turn the samples into energy per inference.

    monitor = PowerMonitor(sensor)
    monitor.measure_idle(2.0)       # baseline, board idle
    monitor.start(); ...run N inferences...; monitor.stop()
    summary = monitor.summary(N)

Energy per inference = (energy in the run window - idle power x window length) / N. A sensor that
fails at any point makes the summary "not available" with the reason: no number is made up.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Sequence

from edgefarm.agent.sensors.base import SYSTEM_CLOCK, PowerSample, PowerSensor, SensorGoneError, WaitClock

NS_PER_S = 1e9
MJ_PER_J = 1000.0


@dataclass(frozen=True)
class PowerSummary:
    available: bool
    sensor: str
    unavailable_reason: str
    avg_power_w: float          # NaN when not available, so nobody averages a placeholder
    idle_power_w: float
    energy_per_inference_mj: float  # above idle; may be slightly negative when the job draws ~nothing
    sample_count: int           # readings in the run window

    @classmethod
    def not_available(cls, reason: str, sensor: str = "") -> PowerSummary:
        nan = math.nan
        return cls(available=False, sensor=sensor, unavailable_reason=reason, avg_power_w=nan,
                   idle_power_w=nan, energy_per_inference_mj=nan, sample_count=0)


@dataclass(frozen=True)
class _Window:
    samples: tuple[PowerSample, ...]
    error: str                  # "" when every reading succeeded


class _SamplingThread:
    """Reads the sensor at a fixed rate until stopped; a failed read ends it and is remembered."""

    def __init__(self, sensor: PowerSensor, interval_s: float, clock: WaitClock) -> None:
        self._sensor = sensor
        self._interval_s = interval_s
        self._clock = clock
        self._samples: list[PowerSample] = []
        self._error = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="power-monitor", daemon=True)

    def start(self) -> None:
        # The first reading is taken here, in the caller's thread, so the window opens at start().
        if self._take():
            self._thread.start()

    def run_for(self, seconds: float) -> _Window:
        """Sample for `seconds` in the caller's thread (it has nothing else to do meanwhile)."""
        if self._take():
            self._loop(until=self._clock.now() + seconds)
        return _Window(tuple(self._samples), self._error)

    def _loop(self, until: float = math.inf) -> None:
        now, wait = self._clock.now, self._clock.wait
        deadline = now()
        while True:
            # Fixed rate; after a slow read (vcgencmd) start afresh rather than burst to catch up.
            deadline = max(deadline + self._interval_s, now())
            if wait(self._stopping, max(0.0, min(deadline, until) - now())) or now() >= until:
                break
            if not self._take():
                return
        self._take()            # one last reading so the window closes at stop() or at `until`

    def _take(self) -> bool:
        try:
            sample = self._sensor.read()
        except (SensorGoneError, OSError, ValueError) as exc:
            self._error = f"{self._sensor.name}: {exc}"
            return False
        # A sensor that updates slower than we poll (tegrastats) repeats its timestamp: keep one.
        if not self._samples or sample.t_ns != self._samples[-1].t_ns:
            self._samples.append(sample)
        return True

    def stop(self) -> _Window:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        return _Window(tuple(self._samples), self._error)


def _span_s(samples: Sequence[PowerSample]) -> float:
    if len(samples) < 2:
        raise ValueError(f"{len(samples)} power reading(s) in the window; need at least 2")
    seconds = (samples[-1].t_ns - samples[0].t_ns) / NS_PER_S
    if seconds <= 0:
        raise ValueError("the power readings span no time")
    return seconds


def window_energy_j(samples: Sequence[PowerSample]) -> tuple[float, float]:
    """(joules, seconds) the samples cover: the counter difference, else a trapezoid over power."""
    if len(samples) >= 2 and samples[0].energy_j is not None and samples[-1].energy_j is not None:
        return samples[-1].energy_j - samples[0].energy_j, _span_s(samples)
    powered = [sample for sample in samples if sample.power_w is not None]
    seconds = _span_s(powered)
    joules = sum((a.power_w + b.power_w) / 2.0 * (b.t_ns - a.t_ns) / NS_PER_S  # type: ignore[operator]
                 for a, b in zip(powered, powered[1:]))
    return joules, seconds


class PowerMonitor:
    """Owns the sampling, not the sensor: the caller closes the sensor."""

    def __init__(self, sensor: PowerSensor, interval_s: float = 0.05, clock: WaitClock = SYSTEM_CLOCK) -> None:
        self._sensor = sensor
        self._interval_s = interval_s   # 0.05 s = 20 Hz; slower sensors just repeat (and are deduplicated)
        self._clock = clock
        self._idle: _Window | None = None
        self._run: _Window | None = None
        self._sampling: _SamplingThread | None = None

    def measure_idle(self, seconds: float) -> None:
        """Blocks for `seconds` while sampling the idle board."""
        self._idle = _SamplingThread(self._sensor, self._interval_s, self._clock).run_for(seconds)

    def start(self) -> None:
        if self._sampling is not None:
            raise RuntimeError("PowerMonitor.start() called twice without stop()")
        self._sampling = _SamplingThread(self._sensor, self._interval_s, self._clock)
        self._sampling.start()

    def stop(self) -> None:
        if self._sampling is None:
            raise RuntimeError("PowerMonitor.stop() without start()")
        self._run = self._sampling.stop()
        self._sampling = None

    def summary(self, inferences: int) -> PowerSummary:
        if inferences <= 0:
            raise ValueError(f"inferences must be positive, got {inferences}")
        if self._idle is None or self._run is None:
            raise RuntimeError("summary() needs measure_idle() before start() and stop()")
        try:
            return self._summarise(self._idle, self._run, inferences)
        except ValueError as exc:
            return PowerSummary.not_available(str(exc), self._sensor.name)

    def _summarise(self, idle: _Window, run: _Window, inferences: int) -> PowerSummary:
        for phase, window in (("idle baseline", idle), ("run", run)):
            if window.error:
                raise ValueError(f"sensor failed during the {phase}: {window.error}")
        idle_j, idle_s = window_energy_j(idle.samples)
        run_j, run_s = window_energy_j(run.samples)
        idle_w = idle_j / idle_s
        above_idle_j = run_j - idle_w * run_s
        return PowerSummary(available=True, sensor=self._sensor.name, unavailable_reason="",
                            avg_power_w=run_j / run_s, idle_power_w=idle_w,
                            energy_per_inference_mj=above_idle_j / inferences * MJ_PER_J,
                            sample_count=len(run.samples))
