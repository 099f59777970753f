"""The one small interface every power sensor implements, and the file/command helpers they share.

A sensor module exposes `open_sensor(root="/") -> sensor` and raises SensorUnavailableError when
its hardware, file or tool is not on this board. `root` lets tests point a sensor at a fake tree.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

# Runs argv and returns its stdout; raises OSError (FileNotFoundError, CommandError) on failure.
# Tests inject one that returns recorded outputs.
CommandRunner = Callable[[Sequence[str]], str]
Clock = Callable[[], int]       # a reading in ns: time.perf_counter_ns, or a test's fake


@dataclass(frozen=True)
class WaitClock:
    """Monotonic seconds and a wait on an Event that can end early: what a periodic thread needs.

    The default is the real clock; a test passes its own pair so it can tick time exactly.
    `wait(event, timeout_s)` returns True when `event` was set, as Event.wait does.
    """

    now: Callable[[], float] = time.monotonic
    wait: Callable[[threading.Event, float], bool] = threading.Event.wait


SYSTEM_CLOCK = WaitClock()

_BIN_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin", "usr/local/bin")


class SensorUnavailableError(Exception):
    """This board has no such sensor (missing file, tool, driver or permission); says which."""


class SensorGoneError(Exception):
    """A sensor that worked when opened stopped answering mid-run (a file vanished, a tool exited)."""


class CommandError(OSError):
    """A command ran but failed: non-zero exit or timeout."""


@dataclass(frozen=True)
class PowerSample:
    t_ns: int                   # when it was read (time.perf_counter_ns unless a test clock is given)
    power_w: float | None       # instantaneous sensors: INA3221, tegrastats, Pi PMIC, NVML
    energy_j: float | None      # counter sensors (RAPL, NVML total energy): monotonic, any origin


class PowerSensor(Protocol):
    name: str                   # says which source and rails, e.g. "ina3221:VDD_IN"

    def read(self) -> PowerSample: ...

    def close(self) -> None: ...


def run_command(argv: Sequence[str], timeout_s: float = 10.0) -> str:
    """The default CommandRunner: stdout of argv, or OSError if it is missing or fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{argv[0]} timed out after {timeout_s} s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise CommandError(f"{' '.join(argv)} exited {done.returncode}: {detail}")
    return done.stdout


def find_executable(name: str, root: str = "/") -> str | None:
    """Path of a board tool under `root`; on the real root also searched on PATH."""
    for bin_dir in _BIN_DIRS:
        path = os.path.join(root, bin_dir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which(name) if os.path.abspath(root) == "/" else None


def read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read().strip()


def read_int(path: str) -> int:
    return int(read_text(path))
