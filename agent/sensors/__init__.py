"""Power and thermal sources, chosen by name.

The registry is an explicit table (not import side effects), so a name is never "unknown" because
some module was not imported; a test checks every source module in this folder is listed. Every
listed module exposes `open_sensor(root="/")`, which raises SensorUnavailableError with a reason.
"""
from __future__ import annotations

import importlib
from typing import Any, Sequence

from edgefarm.agent.sensors.base import PowerSensor, SensorUnavailableError

REGISTRY: dict[str, str] = {
    "ina3221": "edgefarm.agent.sensors.ina3221",
    "tegrastats": "edgefarm.agent.sensors.tegrastats",
    "pi_pmic": "edgefarm.agent.sensors.pi_pmic",
    "nvml": "edgefarm.agent.sensors.nvml",
    "rapl": "edgefarm.agent.sensors.rapl",
    "thermal": "edgefarm.agent.sensors.thermal",
}
# probe() order: board-level input power first. On a Jetson the INA3221 sysfs read is cheaper than
# running tegrastats; on an x86 box NVML (the GPU) comes before RAPL (CPU packages only) because
# accelerated jobs run there. The worker may pass the sensors a job asked for instead.
POWER_SENSORS = ("ina3221", "tegrastats", "pi_pmic", "nvml", "rapl")


class UnknownSensorError(ValueError):
    pass


def sensor_names() -> list[str]:
    return sorted(REGISTRY)


def open_named(name: str, root: str = "/") -> Any:
    """Open one source by name; SensorUnavailableError when this board lacks it."""
    if name not in REGISTRY:
        raise UnknownSensorError(f"unknown sensor {name!r}; valid sensors: {', '.join(sensor_names())}")
    return importlib.import_module(REGISTRY[name]).open_sensor(root)


def probe(root: str = "/", names: Sequence[str] | None = None) -> PowerSensor | None:
    """The first power sensor this board has, in POWER_SENSORS order (or `names` order); None if none."""
    for name in names if names is not None else POWER_SENSORS:
        if name not in POWER_SENSORS:
            raise UnknownSensorError(f"{name!r} is not a power sensor; valid: {', '.join(POWER_SENSORS)}")
        try:
            return open_named(name, root)  # type: ignore[no-any-return]
        except SensorUnavailableError:
            continue
    return None


def unavailable_reasons(root: str = "/") -> dict[str, str]:
    """Why each missing source is missing, for "not available" messages and Describe()."""
    reasons = {}
    for name in REGISTRY:
        try:
            open_named(name, root).close()
        except SensorUnavailableError as exc:
            reasons[name] = str(exc)
    return reasons


def available_sensors(root: str = "/") -> list[str]:
    missing = unavailable_reasons(root)
    return [name for name in REGISTRY if name not in missing]
