"""The PowerMonitor on a ticking fake clock: exact sample counts and energy, sensors that change or vanish."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgefarm.agent.sensors import (
    ina3221,
    probe,
    rapl,
    unavailable_reasons,
)
from edgefarm.agent.sensors.base import PowerSample, WaitClock
from edgefarm.agent.sensors.monitor import PowerMonitor, PowerSummary, window_energy_j
from tests.test_sensors_samplers import (
    TickingClock,
    jp4_iio_chip,
    replace_atomically,
    write,
)

# --- PowerMonitor ------------------------------------------------------------------------------------

WAIT_LIMIT_S = 10.0   # how long a test waits for the sampler thread before giving up (a hang, not a timing)


class FakeTime:
    """Fake monotonic time for the PowerMonitor: it moves only when the sampler waits, by exactly the
    wait's timeout, so every reading lands on an exact tick.

    A wait that would pass the end of a run window parks there: time stands still until the test
    calls stop(), and `parked` says the sampler got there. `at()` schedules a change to the board
    (a new power draw, a vanished file) at an exact moment; `on_advance` sees every step.
    """

    def __init__(self, on_advance: Callable[[int], None] | None = None) -> None:
        self.now_ns = 0
        self.on_advance = on_advance
        self.parked = threading.Event()
        self.clock = WaitClock(now=lambda: self.now_ns / 1e9, wait=self._wait)
        self._end_ns: int | None = None
        self._actions: list[tuple[int, Callable[[], None]]] = []

    def ns(self) -> int:
        """The sensors' clock (PowerSample.t_ns): the same fake time."""
        return self.now_ns

    def at(self, seconds: float, action: Callable[[], None]) -> None:
        self._actions.append((round(seconds * 1e9), action))

    def run_window(self, monitor: PowerMonitor, seconds: float) -> None:
        """start(), let exactly `seconds` of fake time pass while sampling, stop()."""
        self._end_ns, self.parked = self.now_ns + round(seconds * 1e9), threading.Event()
        monitor.start()
        assert self.parked.wait(WAIT_LIMIT_S), "the sampler never reached the end of the window"
        monitor.stop()

    def _wait(self, event: threading.Event, timeout_s: float) -> bool:
        if event.is_set():
            return True
        step_ns = max(round(timeout_s * 1e9), 1 if timeout_s > 0 else 0)  # a 1e-17 s wait must not spin
        if self._end_ns is not None and self.now_ns + step_ns > self._end_ns:
            self.parked.set()
            return event.wait()     # the test's stop() sets it
        self.now_ns += step_ns
        if self.on_advance is not None:
            self.on_advance(step_ns)
        for due_ns, action in [a for a in self._actions if a[0] <= self.now_ns]:
            self._actions.remove((due_ns, action))
            action()
        return False


class ScriptedPowerSensor:
    """A power sensor whose watts the test sets; time comes from a fake clock."""

    name = "scripted"

    def __init__(self, watts: float, clock: Callable[[], int] | None = None) -> None:
        self.watts = watts
        self.clock = clock or TickingClock()
        self.fail_with: Exception | None = None

    def read(self) -> PowerSample:
        if self.fail_with is not None:
            raise self.fail_with
        return PowerSample(t_ns=self.clock(), power_w=self.watts, energy_j=None)

    def close(self) -> None:
        pass


def test_monitor_samples_exactly_every_tick_and_energy_is_exact() -> None:
    time_ = FakeTime()
    sensor = ScriptedPowerSensor(watts=1.0, clock=time_.ns)
    monitor = PowerMonitor(sensor, interval_s=0.1, clock=time_.clock)
    monitor.measure_idle(1.0)               # readings at 0.0, 0.1, ..., 1.0 s
    sensor.watts = 3.0
    time_.run_window(monitor, 1.0)          # readings at 1.0, 1.1, ..., 2.0 s
    summary = monitor.summary(inferences=10)
    assert (summary.available, summary.sensor, summary.unavailable_reason) == (True, "scripted", "")
    assert summary.sample_count == 11
    assert summary.avg_power_w == pytest.approx(3.0) and summary.idle_power_w == pytest.approx(1.0)
    assert summary.energy_per_inference_mj == pytest.approx((3.0 - 1.0) * 1.0 / 10 * 1000)


@pytest.mark.parametrize(("interval_s", "seconds", "readings"), [(0.1, 1.0, 11), (0.05, 1.0, 21), (0.25, 0.5, 3)])
def test_monitor_idle_reading_count_is_exact(interval_s: float, seconds: float, readings: int) -> None:
    time_ = FakeTime()
    sensor = ScriptedPowerSensor(watts=2.0, clock=time_.ns)
    monitor = PowerMonitor(sensor, interval_s=interval_s, clock=time_.clock)
    monitor.measure_idle(seconds)
    time_.run_window(monitor, seconds)
    summary = monitor.summary(inferences=1)
    assert summary.sample_count == readings and time_.now_ns == round(2 * seconds * 1e9)
    assert summary.idle_power_w == pytest.approx(2.0) and summary.energy_per_inference_mj == pytest.approx(0.0)


class FakeRaplBoard:
    """A powercap tree whose package counter advances by `watts` x the time that passes, wrapping."""

    def __init__(self, root: Path, watts: float, max_range_uj: int = 3_000_000) -> None:
        self.energy_file = write(root / "sys/class/powercap/intel-rapl:0/energy_uj", "2900000")
        write(root / "sys/class/powercap/intel-rapl:0/name", "package-0")
        write(root / "sys/class/powercap/intel-rapl:0/max_energy_range_uj", str(max_range_uj))
        self.watts = watts
        self.max_range_uj = max_range_uj
        self.time = FakeTime(on_advance=self._advance)

    def _advance(self, step_ns: int) -> None:
        counter = int(self.energy_file.read_text()) + round(self.watts * step_ns / 1e3)
        self.energy_file.write_text(f"{counter % self.max_range_uj}\n")


def test_monitor_with_rapl_tree_changing_over_time_and_wrapping(tmp_path: Path) -> None:
    board = FakeRaplBoard(tmp_path, watts=2.0)
    sensor = rapl.open_sensor(str(tmp_path), clock=board.time.ns)
    monitor = PowerMonitor(sensor, interval_s=0.1, clock=board.time.clock)
    monitor.measure_idle(1.0)
    board.watts = 10.0                     # 1 J a tick: the 3 J counter wraps every third tick
    board.time.run_window(monitor, 1.0)
    summary = monitor.summary(inferences=4)
    assert summary.available and summary.sensor == "rapl:package-0" and summary.sample_count == 11
    assert summary.idle_power_w == pytest.approx(2.0) and summary.avg_power_w == pytest.approx(10.0)
    assert summary.energy_per_inference_mj == pytest.approx(8.0 * 1.0 / 4 * 1000)


def test_monitor_with_ina3221_tree_whose_power_changes_during_the_run(tmp_path: Path) -> None:
    device = jp4_iio_chip(tmp_path, "6-0040", {"POM_5V_IN": 1000, "POM_5V_GPU": 0, "POM_5V_CPU": 0})
    time_ = FakeTime()
    monitor = PowerMonitor(ina3221.open_sensor(str(tmp_path), clock=time_.ns), interval_s=0.1, clock=time_.clock)
    monitor.measure_idle(1.0)
    replace_atomically(device / "in_power0_input", "3000")
    time_.at(1.5, lambda: replace_atomically(device / "in_power0_input", "5000"))
    time_.run_window(monitor, 1.0)
    summary = monitor.summary(inferences=2)
    # 3 W read at 1.0-1.4 s, 5 W at 1.5-2.0 s: 4 x 0.3 J + (3 + 5) / 2 x 0.1 J + 5 x 0.5 J = 4.1 J in 1 s
    assert summary.available and summary.sample_count == 11
    assert summary.idle_power_w == pytest.approx(1.0) and summary.avg_power_w == pytest.approx(4.1)
    assert summary.energy_per_inference_mj == pytest.approx((4.1 - 1.0) * 1.0 / 2 * 1000)


def test_monitor_sensor_file_vanishing_mid_run_is_not_available(tmp_path: Path) -> None:
    device = jp4_iio_chip(tmp_path, "6-0040", {"POM_5V_IN": 1000, "POM_5V_GPU": 0, "POM_5V_CPU": 0})
    time_ = FakeTime()
    monitor = PowerMonitor(ina3221.open_sensor(str(tmp_path), clock=time_.ns), interval_s=0.1, clock=time_.clock)
    monitor.measure_idle(0.3)
    vanished = threading.Event()
    time_.at(0.6, lambda: ((device / "in_power0_input").unlink(), vanished.set()))
    monitor.start()
    assert vanished.wait(WAIT_LIMIT_S)      # the sampler's next step is the read that fails
    monitor.stop()
    summary = monitor.summary(inferences=100)
    assert not summary.available and summary.sensor == "ina3221:POM_5V_IN"
    assert "during the run" in summary.unavailable_reason
    assert "in_power0_input vanished" in summary.unavailable_reason
    assert math.isnan(summary.energy_per_inference_mj) and summary.sample_count == 0


def test_monitor_sensor_failing_during_idle_is_not_available() -> None:
    time_ = FakeTime()
    sensor = ScriptedPowerSensor(watts=1.0, clock=time_.ns)
    sensor.fail_with = OSError("i2c read error")
    monitor = PowerMonitor(sensor, interval_s=0.1, clock=time_.clock)
    monitor.measure_idle(1.0)
    assert time_.now_ns == 0                # the first read failed: it gave up at once
    sensor.fail_with = None
    time_.run_window(monitor, 0.5)
    summary = monitor.summary(inferences=1)
    assert not summary.available
    assert summary.unavailable_reason == "sensor failed during the idle baseline: scripted: i2c read error"


def test_monitor_drops_repeated_timestamps() -> None:
    time_ = FakeTime()
    # Updates every 100 ms of fake time, like tegrastats, while the monitor polls every 10 ms.
    sensor = ScriptedPowerSensor(watts=2.0, clock=lambda: time_.ns() // 100_000_000 * 100_000_000)
    monitor = PowerMonitor(sensor, interval_s=0.01, clock=time_.clock)
    monitor.measure_idle(0.35)              # 36 polls, 4 readings: 0.0, 0.1, 0.2, 0.3 s
    time_.run_window(monitor, 0.35)         # 36 polls from 0.35 to 0.7 s, 5 readings: 0.3, ..., 0.7 s
    assert monitor.summary(inferences=1).sample_count == 5


def test_monitor_misuse_is_an_error_not_a_number() -> None:
    monitor = PowerMonitor(ScriptedPowerSensor(watts=1.0))
    with pytest.raises(RuntimeError, match="stop\\(\\) without start"):
        monitor.stop()
    monitor.start()
    monitor.stop()
    with pytest.raises(RuntimeError, match="measure_idle"):
        monitor.summary(inferences=5)
    with pytest.raises(ValueError, match="positive"):
        monitor.summary(inferences=0)


def test_window_energy_needs_two_readings_over_time() -> None:
    with pytest.raises(ValueError, match="need at least 2"):
        window_energy_j((PowerSample(1, 2.0, None),))
    with pytest.raises(ValueError, match="span no time"):
        window_energy_j((PowerSample(5, 2.0, None), PowerSample(5, 2.0, None)))
    assert window_energy_j((PowerSample(0, 1.0, None), PowerSample(2_000_000_000, 3.0, None))) == (4.0, 2.0)


def test_not_available_summary_carries_no_numbers() -> None:
    summary = PowerSummary.not_available("no power sensor on this board")
    assert not summary.available and summary.unavailable_reason == "no power sensor on this board"
    assert all(math.isnan(value) for value in (summary.avg_power_w, summary.idle_power_w,
                                               summary.energy_per_inference_mj))


# --- real hardware -----------------------------------------------------------------------------------

@pytest.mark.hardware
def test_real_board_power_sensor_reads_plausible_power() -> None:
    sensor = probe()
    if sensor is None:
        pytest.skip(f"no power sensor on this machine: {unavailable_reasons()}")
    try:
        monitor = PowerMonitor(sensor)
        monitor.measure_idle(0.3)
        monitor.start()
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            sum(i * i for i in range(10_000))
        monitor.stop()
        summary = monitor.summary(inferences=1)
    finally:
        sensor.close()
    assert summary.available, summary.unavailable_reason
    assert 0.1 < summary.avg_power_w < 2000.0 and summary.sample_count >= 2


def test_sampling_thread_is_a_daemon_so_a_hung_sensor_cannot_block_exit() -> None:
    monitor = PowerMonitor(ScriptedPowerSensor(watts=1.0), interval_s=0.01)
    monitor.start()
    threads = [t for t in threading.enumerate() if t.name == "power-monitor"]
    monitor.stop()
    assert threads and all(t.daemon for t in threads)
