"""NVIDIA discrete-GPU power through NVML (pynvml, from the optional `nvidia-ml-py` package).

Not on Jetsons before JetPack 7: their nvgpu iGPU has no NVML power; use ina3221/tegrastats there.
"""
from __future__ import annotations

import os
import time
from typing import Any

from edgefarm.agent.sensors.base import Clock, PowerSample, SensorGoneError, SensorUnavailableError

MW_PER_W = 1000.0
MJ_PER_J = 1000.0


class NvmlSensor:
    """GPU board power (mW) and, on Volta and newer, the total-energy counter (mJ since driver load)."""

    def __init__(self, nvml: Any, handle: Any, device_index: int, has_energy: bool,
                 clock: Clock = time.perf_counter_ns) -> None:
        self.name = f"nvml:gpu{device_index}"
        self._nvml = nvml
        self._handle = handle
        self._has_energy = has_energy
        self._clock = clock
        self._open = True

    def read(self) -> PowerSample:
        # On Ampere and newer (except GA100) the power reading is a 1 s average, so the monitor
        # integrates the energy counter instead whenever it is there.
        try:
            power_w = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / MW_PER_W
            energy_j = None
            if self._has_energy:
                energy_j = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / MJ_PER_J
        except self._nvml.NVMLError as exc:
            raise SensorGoneError(f"NVML read failed: {exc}") from exc
        return PowerSample(t_ns=self._clock(), power_w=power_w, energy_j=energy_j)

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass


def _supports_energy(nvml: Any, handle: Any) -> bool:
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except nvml.NVMLError:      # NVML_ERROR_NOT_SUPPORTED before Volta
        return False
    return True


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise SensorUnavailableError("pynvml is not installed (pip install nvidia-ml-py)") from exc
    return pynvml


def open_sensor(root: str = "/", device_index: int = 0, clock: Clock = time.perf_counter_ns) -> NvmlSensor:
    if os.path.abspath(root) != "/":
        raise SensorUnavailableError("NVML reads the live driver, not a file tree: probed only with root='/'")
    nvml = _import_pynvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise SensorUnavailableError(f"nvmlInit failed: {exc}") from exc
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
        nvml.nvmlDeviceGetPowerUsage(handle)
    except nvml.NVMLError as exc:
        nvml.nvmlShutdown()
        raise SensorUnavailableError(f"NVML has no power reading for GPU {device_index}: {exc}") from exc
    return NvmlSensor(nvml, handle, device_index, _supports_energy(nvml, handle), clock)
