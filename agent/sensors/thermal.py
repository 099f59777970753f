"""Temperatures from the Linux thermal zones: /sys/class/thermal/thermal_zone*/{type,temp}."""
from __future__ import annotations

import glob
import os
import re
from collections import Counter

from edgefarm.agent.sensors.base import SensorUnavailableError, read_int, read_text

THERMAL = "sys/class/thermal"
SENSOR_OFF_MILLI_C = -256000    # Jetson Orin: a powered-off sensor (CV, GPU) reads -256 C
_ZONE_NUMBER = re.compile(r"thermal_zone(\d+)$")


def _zones(root: str) -> list[tuple[int, str]]:
    """(zone number, zone dir), in numeric order (thermal_zone10 after thermal_zone9)."""
    zones = []
    for zone_dir in glob.glob(os.path.join(root, THERMAL, "thermal_zone*")):
        match = _ZONE_NUMBER.search(zone_dir)
        if match is not None:
            zones.append((int(match.group(1)), zone_dir))
    return sorted(zones)


def _zone_types(zones: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    typed = []
    for number, zone_dir in zones:
        try:
            typed.append((number, zone_dir, read_text(os.path.join(zone_dir, "type"))))
        except OSError:
            continue
    return typed


def read_temperatures(root: str = "/") -> dict[str, float]:
    """Zone type -> degrees C; a type shared by several zones (x86 "acpitz") gets ":<zone number>"."""
    typed = _zone_types(_zones(root))
    repeated = Counter(zone_type for _, _, zone_type in typed)
    temps = {}
    for number, zone_dir, zone_type in typed:
        try:
            milli_c = read_int(os.path.join(zone_dir, "temp"))
        except (OSError, ValueError):
            continue            # some zones refuse reads (EINVAL/ENODATA) while their sensor is off
        if milli_c != SENSOR_OFF_MILLI_C:
            name = f"{zone_type}:{number}" if repeated[zone_type] > 1 else zone_type
            temps[name] = milli_c / 1000.0
    return temps


class ThermalZonesSensor:
    """Not a power sensor: read() gives every readable zone's temperature."""

    name = "thermal"

    def __init__(self, root: str = "/") -> None:
        self._root = root

    def read(self) -> dict[str, float]:
        return read_temperatures(self._root)

    def close(self) -> None:
        pass


def open_sensor(root: str = "/") -> ThermalZonesSensor:
    if not read_temperatures(root):
        raise SensorUnavailableError(f"no readable thermal zone under {os.path.join(root, THERMAL)}")
    return ThermalZonesSensor(root)
