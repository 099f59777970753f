"""Jetson tegrastats: a parser for every generation's line format, and a power sensor that runs it.

Format changes the parser handles (see ../shared/device-samples/tegrastats_*.txt):
- JetPack 3/4: rails "NAME cur/avg" with no unit (TX2 rail names changed between JetPack 3 and 4).
- JetPack 5: "MM-DD-YYYY HH:MM:SS" prefix, rails "NAME 2763mW/2846mW", GR3D_FREQ "0%@[114]".
- JetPack 6 (Orin): lowercase temperature names, "-256C" for a powered-off sensor.
- JetPack 7: rails "cur/avg/peak", temperatures "cpu@52.968C/52.968C"; AGX Thor prints no GR3D_FREQ.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

from edgefarm.agent.sensors.base import (
    Clock,
    PowerSample,
    SensorGoneError,
    SensorUnavailableError,
    find_executable,
)
from edgefarm.agent.sensors.ina3221 import NOT_CONNECTED, choose_total_rails

_TIMESTAMP = re.compile(r"^\s*(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d) ")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
_RAIL = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")
_TEMP = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)?(?=\s|$)")
SENSOR_OFF_C = -256.0           # Orin: CV/GPU zones report -256C while their sensor is powered off
MW_PER_W = 1000.0


@dataclass(frozen=True)
class RailPower:
    current_mw: int
    average_mw: int
    peak_mw: int | None = None  # JetPack 7 only


@dataclass(frozen=True)
class TegrastatsLine:
    timestamp: str              # "" before JetPack 5
    ram_used_mb: int
    ram_total_mb: int
    gr3d_percent: int | None    # None where not printed (AGX Thor)
    gr3d_freq_mhz: tuple[int, ...]  # one per GPC from JetPack 5; empty when run without root on JetPack 4
    rails: dict[str, RailPower]
    temps_c: dict[str, float]   # the second value of "cpu@52.968C/52.968C" (JetPack 7) is dropped

    def input_rails(self) -> list[str]:
        return choose_total_rails(list(self.rails))

    def input_power_mw(self) -> float:
        """Board input power: the input rail where printed, else the sum of every rail (see ina3221)."""
        rails = self.input_rails()
        if not rails:
            raise ValueError("tegrastats line has no power rails")
        return float(sum(self.rails[name].current_mw for name in rails))


def _parse_rails(line: str) -> dict[str, RailPower]:
    rails = {}
    for name, current, average, peak in _RAIL.findall(line):
        if name != NOT_CONNECTED:
            rails[name] = RailPower(int(current), int(average), int(peak) if peak else None)
    return rails


def _parse_temps(line: str) -> dict[str, float]:
    temps = {}
    for name, value in _TEMP.findall(line):
        if float(value) != SENSOR_OFF_C:
            temps[name] = float(value)
    return temps


def _parse_gr3d(line: str) -> tuple[int | None, tuple[int, ...]]:
    match = _GR3D.search(line)
    if match is None:
        return None, ()
    percent, freqs = match.groups()
    return (int(percent) if percent else None,
            tuple(int(freq) for freq in freqs.split(",")) if freqs else ())


def parse_tegrastats_line(line: str) -> TegrastatsLine:
    ram = _RAM.search(line)
    if ram is None:
        raise ValueError(f"not a tegrastats line: {line[:80]!r}")
    timestamp = _TIMESTAMP.match(line)
    gr3d_percent, gr3d_freqs = _parse_gr3d(line)
    return TegrastatsLine(timestamp=timestamp.group(1) if timestamp else "",
                          ram_used_mb=int(ram.group(1)), ram_total_mb=int(ram.group(2)),
                          gr3d_percent=gr3d_percent, gr3d_freq_mhz=gr3d_freqs,
                          rails=_parse_rails(line), temps_c=_parse_temps(line))


class TegrastatsSensor:
    """Board input power from the latest line a tegrastats stream printed.

    A reader thread keeps the newest parsed line; read() returns it with the time it arrived,
    so a monitor sampling faster than tegrastats prints sees repeated timestamps (and drops them).
    """

    def __init__(self, lines: IO[str], process: subprocess.Popen | None = None,
                 clock: Clock = time.perf_counter_ns, first_line_timeout_s: float = 5.0) -> None:
        self.name = "tegrastats"
        self._process = process
        self._clock = clock
        self._timeout_s = first_line_timeout_s
        self._latest: tuple[int, TegrastatsLine] | None = None
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._pump, args=(lines,), name="tegrastats", daemon=True)
        self._reader.start()

    def _pump(self, lines: IO[str]) -> None:
        try:
            for text in lines:
                arrived = self._clock()
                try:
                    parsed = parse_tegrastats_line(text)
                except ValueError:
                    continue    # a warning tegrastats prints among its lines
                with self._changed:
                    self._latest = (arrived, parsed)
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass                # the pipe was closed under us: same as the stream ending
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def read(self) -> PowerSample:
        with self._changed:
            self._changed.wait_for(lambda: self._latest is not None or self._ended, self._timeout_s)
            if self._ended:
                raise SensorGoneError(f"tegrastats stopped printing{self._exit_status()}")
            if self._latest is None:
                raise SensorGoneError(f"tegrastats printed no line within {self._timeout_s} s")
            arrived, line = self._latest
        self.name = "tegrastats:" + "+".join(line.input_rails())
        return PowerSample(t_ns=arrived, power_w=line.input_power_mw() / MW_PER_W, energy_j=None)

    def _exit_status(self) -> str:
        code = self._process.poll() if self._process is not None else None
        return f" (exit code {code})" if code is not None else ""

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=2.0)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()


def start_tegrastats(executable: str, interval_ms: int = 100,
                     clock: Clock = time.perf_counter_ns) -> TegrastatsSensor:
    """Run `tegrastats --interval <ms>` and read its lines as they come."""
    process = subprocess.Popen([executable, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, universal_newlines=True, bufsize=1)
    return TegrastatsSensor(process.stdout, process, clock)  # type: ignore[arg-type]


def open_sensor(root: str = "/", interval_ms: int = 100,
                clock: Clock = time.perf_counter_ns) -> TegrastatsSensor:
    # 100 ms = 10 Hz: tegrastats itself reads dozens of sysfs files per line, so printing faster
    # would load the small Jetsons (Nano) that we are measuring. INA3221 sysfs is tried first anyway.
    executable = find_executable("tegrastats", root)
    if executable is None:
        raise SensorUnavailableError("no tegrastats executable (not a Jetson, or L4T tools not installed)")
    try:
        return start_tegrastats(executable, interval_ms, clock)
    except OSError as exc:
        raise SensorUnavailableError(f"cannot run {executable}: {exc}") from exc
