"""Raspberry Pi 5 power from `vcgencmd pmic_read_adc`, and `vcgencmd get_throttled` decoding.

The PMIC sum is SoC/board-side power: it excludes USB and other 5 V peripheral current, so it is
not wall power. Pre-Pi 5 firmware answers pmic_read_adc with 'error=1 error_msg="Command not registered"'.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from edgefarm.agent.sensors.base import (
    Clock,
    CommandRunner,
    PowerSample,
    SensorGoneError,
    SensorUnavailableError,
    find_executable,
    run_command,
)

# "  VDD_CORE_A current(7)=6.22421000A": the number in brackets is an ADC channel, not a rail id,
# so rails are paired by name (VDD_CORE_A with VDD_CORE_V).
_ADC_LINE = re.compile(r"^\s*(\S+)_([AV]) (?:current|volt)\(\d+\)=(-?\d+(?:\.\d+)?)[AV]\s*$")
_ERROR = re.compile(r'error=\d+ error_msg="([^"]*)"')
_THROTTLED = re.compile(r"throttled=0x([0-9a-fA-F]+)")
# Bit meanings from the Raspberry Pi documentation (os.html#get_throttled).
THROTTLE_BITS = {
    0: "under_voltage", 1: "arm_freq_capped", 2: "throttled", 3: "soft_temp_limit",
    16: "under_voltage_occurred", 17: "arm_freq_capped_occurred",
    18: "throttled_occurred", 19: "soft_temp_limit_occurred",
}
ACTIVE_NOW_MASK = 0xF           # bits 0-3 describe now; bits 16-19 "since boot"


@dataclass(frozen=True)
class PmicReading:
    currents_a: dict[str, float]    # rail name (without _A) -> amperes
    volts_v: dict[str, float]       # rail name (without _V) -> volts; EXT5V and BATT have no current

    def paired_rails(self) -> list[str]:
        return sorted(set(self.currents_a) & set(self.volts_v))

    def power_w(self) -> float:
        rails = self.paired_rails()
        if not rails:
            raise ValueError("no PMIC rail has both a _V and an _A reading")
        return sum(self.volts_v[rail] * self.currents_a[rail] for rail in rails)


def parse_pmic_read_adc(text: str) -> PmicReading:
    error = _ERROR.search(text)
    if error is not None:
        raise ValueError(f"vcgencmd pmic_read_adc: {error.group(1)}")
    readings: dict[str, dict[str, float]] = {"A": {}, "V": {}}
    for line in text.splitlines():
        match = _ADC_LINE.match(line)
        if match is not None:
            rail, unit, value = match.groups()
            readings[unit][rail] = float(value)
    return PmicReading(currents_a=readings["A"], volts_v=readings["V"])


@dataclass(frozen=True)
class ThrottleState:
    raw: int
    flags: list[str]            # names of the set bits, low bits first; unknown bits as "bit<N>"

    @property
    def active_now(self) -> bool:
        return bool(self.raw & ACTIVE_NOW_MASK)


def parse_get_throttled(text: str) -> ThrottleState:
    match = _THROTTLED.search(text)
    if match is None:
        raise ValueError(f"not get_throttled output: {text.strip()[:80]!r}")
    raw = int(match.group(1), 16)
    flags = [THROTTLE_BITS.get(bit, f"bit{bit}") for bit in range(raw.bit_length()) if raw >> bit & 1]
    return ThrottleState(raw=raw, flags=flags)


class PiPmicSensor:
    """Sum over PMIC rails of V x A, one vcgencmd call per reading."""

    def __init__(self, executable: str, runner: CommandRunner = run_command,
                 clock: Clock = time.perf_counter_ns) -> None:
        self.name = "pi_pmic"
        self._argv = [executable, "pmic_read_adc"]
        self._runner = runner
        self._clock = clock

    def read(self) -> PowerSample:
        started = self._clock()
        try:
            text = self._runner(self._argv)
        except OSError as exc:
            raise SensorGoneError(f"vcgencmd failed: {exc}") from exc
        # vcgencmd takes a few ms; the reading belongs to the middle of the call.
        t_ns = (started + self._clock()) // 2
        return PowerSample(t_ns=t_ns, power_w=parse_pmic_read_adc(text).power_w(), energy_j=None)

    def close(self) -> None:
        pass


def open_sensor(root: str = "/", runner: CommandRunner = run_command,
                clock: Clock = time.perf_counter_ns) -> PiPmicSensor:
    executable: str | None = find_executable("vcgencmd", root)
    if executable is None:
        raise SensorUnavailableError("no vcgencmd (not a Raspberry Pi)")
    sensor = PiPmicSensor(executable, runner, clock)
    try:
        sensor.read()
    except (SensorGoneError, ValueError) as exc:
        raise SensorUnavailableError(f"no Pi 5 PMIC readings: {exc}") from exc
    return sensor


def read_throttle_state(root: str = "/", runner: CommandRunner = run_command) -> ThrottleState | None:
    """get_throttled on any Pi; None where there is no vcgencmd or it fails."""
    executable = find_executable("vcgencmd", root)
    if executable is None:
        return None
    try:
        return parse_get_throttled(runner([executable, "get_throttled"]))
    except (OSError, ValueError):
        return None
