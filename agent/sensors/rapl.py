"""Intel RAPL package energy through the powercap sysfs tree (x86 boxes; AMD Zen uses the same tree)."""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Sequence

from edgefarm.agent.sensors.base import (
    Clock,
    PowerSample,
    SensorGoneError,
    SensorUnavailableError,
    read_int,
    read_text,
)

POWERCAP = "sys/class/powercap"
UJ_PER_J = 1e6


@dataclass(frozen=True)
class RaplZone:
    name: str                   # "package-0"
    energy_path: str            # .../intel-rapl:0/energy_uj
    max_energy_range_uj: int    # the counter wraps back to 0 here


def find_package_zones(root: str = "/") -> list[RaplZone]:
    """The top-level package zones, one per CPU socket."""
    # "intel-rapl:*" has exactly one colon for top-level zones. Subzones (intel-rapl:0:0 core,
    # uncore, dram) are already inside their package, "psys" covers the whole platform including
    # the packages, and intel-rapl-mmio:0 repeats package-0 over MMIO: summing any of them with
    # the packages would count energy twice.
    zones = []
    for zone_dir in sorted(glob.glob(os.path.join(root, POWERCAP, "intel-rapl:*"))):
        if os.path.basename(zone_dir).count(":") != 1:
            continue
        name = read_text(os.path.join(zone_dir, "name"))
        if name.startswith("package-"):
            zones.append(RaplZone(name, os.path.join(zone_dir, "energy_uj"),
                                  read_int(os.path.join(zone_dir, "max_energy_range_uj"))))
    return zones


def unwrapped_delta_uj(previous_uj: int, current_uj: int, max_energy_range_uj: int) -> int:
    """Energy between two counter readings, across at most one wrap."""
    # The counter wraps at max_energy_range_uj (262 kJ on Intel, 65.5 kJ on AMD EPYC: about an
    # hour at 65 W); we read many times a second, so at most one wrap lies between two readings.
    if current_uj < previous_uj:
        return current_uj - previous_uj + max_energy_range_uj
    return current_uj - previous_uj


def _read_counter(zone: RaplZone) -> int:
    try:
        return read_int(zone.energy_path)
    except FileNotFoundError as exc:
        raise SensorGoneError(f"RAPL counter {zone.energy_path} vanished") from exc


class RaplSensor:
    """Sum of the package zones' energy, unwrapped, in joules since the sensor was opened."""

    def __init__(self, zones: Sequence[RaplZone], clock: Clock = time.perf_counter_ns) -> None:
        self.name = "rapl:" + "+".join(zone.name for zone in zones)
        self._zones = list(zones)
        self._clock = clock
        self._last_uj = [_read_counter(zone) for zone in self._zones]
        self._total_uj = 0

    def read(self) -> PowerSample:
        for index, zone in enumerate(self._zones):
            current = _read_counter(zone)
            self._total_uj += unwrapped_delta_uj(self._last_uj[index], current, zone.max_energy_range_uj)
            self._last_uj[index] = current
        return PowerSample(t_ns=self._clock(), power_w=None, energy_j=self._total_uj / UJ_PER_J)

    def close(self) -> None:
        pass


def open_sensor(root: str = "/", clock: Clock = time.perf_counter_ns) -> RaplSensor:
    try:
        zones = find_package_zones(root)
        if not zones:
            raise SensorUnavailableError(f"no intel-rapl package zone under {os.path.join(root, POWERCAP)}")
        return RaplSensor(zones, clock)
    except PermissionError as exc:
        # Since the PLATYPUS fix (CVE-2020-8694, Linux 5.10 and backports) energy_uj is root-only.
        raise SensorUnavailableError(f"RAPL energy_uj is readable by root only: {exc}") from exc
    except (OSError, ValueError, SensorGoneError) as exc:
        raise SensorUnavailableError(f"RAPL powercap tree unreadable: {exc}") from exc
