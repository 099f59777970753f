"""Jetson power from the INA3221 monitors in sysfs.

JetPack 4 (L4T R32) uses NVIDIA's downstream `ina3221x` IIO driver, which computes milliwatts:
  /sys/bus/i2c/drivers/ina3221x/<bus>-00<addr>/iio:device<N>/rail_name_<k>, in_power<k>_input (k = 0..2)
JetPack 5 and later use the upstream `ina3221` hwmon driver, which has no power file:
  /sys/bus/i2c/drivers/ina3221/<bus>-00<addr>/hwmon/hwmon<N>/in<k>_label, in<k>_input [mV], curr<k>_input [mA]
"""
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

IIO_DEVICES = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
HWMON_DEVICES = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
# Whole-module input rails: TX1/TX2, Xavier NX, Orin NX/Nano (VDD_IN), Nano (POM_5V_IN), AGX Thor (VIN).
TOTAL_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
NOT_CONNECTED = "NC"            # AGX Orin's second INA3221 labels its unused channels "NC"
MW_PER_W = 1000.0


@dataclass(frozen=True)
class Ina3221Channel:
    label: str
    power_mw_path: str = ""     # JetPack 4 IIO layout
    voltage_mv_path: str = ""   # JetPack 5+ hwmon layout: P = V x I
    current_ma_path: str = ""

    def read_mw(self) -> float:
        try:
            if self.power_mw_path:
                return float(read_int(self.power_mw_path))
            return read_int(self.voltage_mv_path) * read_int(self.current_ma_path) / 1000.0
        except FileNotFoundError as exc:
            raise SensorGoneError(f"INA3221 rail {self.label}: {exc.filename} vanished") from exc


def choose_total_rails(labels: Sequence[str]) -> list[str]:
    """The rails whose sum is the board's power: its input rail where it has one, else every rail."""
    # The input rail (VDD_IN, POM_5V_IN, VIN) feeds all the others, so adding any other rail to
    # it would count that power twice. AGX Xavier and AGX Orin have no input rail on their
    # INA3221s; there the sum of every connected rail is the closest figure (NVIDIA forum advice),
    # and it reads low because it misses regulator losses. The sensor name records which it was.
    connected = [label for label in labels if label != NOT_CONNECTED]
    for name in TOTAL_INPUT_RAILS:
        if name in connected:
            return [name]
    return connected


def find_iio_channels(root: str = "/") -> list[Ina3221Channel]:
    channels = []
    for device in sorted(glob.glob(os.path.join(root, IIO_DEVICES))):
        for k in range(3):
            label_path = os.path.join(device, f"rail_name_{k}")
            if os.path.exists(label_path):
                channels.append(Ina3221Channel(read_text(label_path),
                                               power_mw_path=os.path.join(device, f"in_power{k}_input")))
    return channels


def _hwmon_channel_enabled(device: str, k: int) -> bool:
    enable_path = os.path.join(device, f"in{k}_enable")
    return not os.path.exists(enable_path) or read_text(enable_path) != "0"


def find_hwmon_channels(root: str = "/") -> list[Ina3221Channel]:
    # Only k = 1..3 are rails: in4..in6 are shunt voltages and in7 is "sum of shunt voltages".
    channels = []
    for device in sorted(glob.glob(os.path.join(root, HWMON_DEVICES))):
        for k in (1, 2, 3):
            label_path = os.path.join(device, f"in{k}_label")
            if os.path.exists(label_path) and _hwmon_channel_enabled(device, k):
                channels.append(Ina3221Channel(read_text(label_path),
                                               voltage_mv_path=os.path.join(device, f"in{k}_input"),
                                               current_ma_path=os.path.join(device, f"curr{k}_input")))
    return channels


class Ina3221Sensor:
    """Instantaneous power of the chosen rails, summed."""

    def __init__(self, channels: Sequence[Ina3221Channel], clock: Clock = time.perf_counter_ns) -> None:
        self.name = "ina3221:" + "+".join(channel.label for channel in channels)
        self._channels = list(channels)
        self._clock = clock

    def read(self) -> PowerSample:
        total_mw = sum(channel.read_mw() for channel in self._channels)
        return PowerSample(t_ns=self._clock(), power_w=total_mw / MW_PER_W, energy_j=None)

    def close(self) -> None:
        pass


def open_sensor(root: str = "/", clock: Clock = time.perf_counter_ns) -> Ina3221Sensor:
    try:
        channels = find_hwmon_channels(root) or find_iio_channels(root)
        chosen = set(choose_total_rails([channel.label for channel in channels]))
        if not chosen:
            raise SensorUnavailableError("no INA3221 rail under /sys/bus/i2c/drivers/ina3221{,x}")
        sensor = Ina3221Sensor([channel for channel in channels if channel.label in chosen], clock)
        sensor.read()
    except (OSError, ValueError, SensorGoneError) as exc:
        raise SensorUnavailableError(f"INA3221 sysfs unreadable: {exc}") from exc
    return sensor
