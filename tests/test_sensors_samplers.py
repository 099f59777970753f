"""Power samplers against fake sysfs trees built from the recorded layouts (the PowerMonitor: test_power_monitor.py)."""
from __future__ import annotations

import os
import pkgutil
import stat
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import edgefarm.agent.sensors
from edgefarm.agent.sensors import (
    POWER_SENSORS,
    REGISTRY,
    UnknownSensorError,
    available_sensors,
    ina3221,
    nvml,
    open_named,
    pi_pmic,
    probe,
    rapl,
    tegrastats,
    thermal,
    unavailable_reasons,
)
from edgefarm.agent.sensors.base import PowerSample, SensorGoneError, SensorUnavailableError

NOT_SOURCES = {"base", "monitor"}   # the interface and the sampler, not sources


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def replace_atomically(path: Path, text: str) -> None:
    """Change a value the sampler thread may be reading: sysfs never shows a half-written file."""
    staging = path.with_name(path.name + ".new")
    staging.write_text(text + "\n")
    os.replace(staging, path)


def make_executable(path: Path, script: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class TickingClock:
    """A fake perf_counter_ns that advances exactly `step_ns` per call; `on_tick` runs at each tick."""

    def __init__(self, step_ns: int = 50_000_000, on_tick: Callable[[int], None] | None = None) -> None:
        self.now_ns = 0
        self.step_ns = step_ns
        self.on_tick = on_tick

    def __call__(self) -> int:
        self.now_ns += self.step_ns
        if self.on_tick is not None:
            self.on_tick(self.now_ns)
        return self.now_ns


# --- RAPL ------------------------------------------------------------------------------------------

def powercap_tree_from_recorded_info(samples: Path, root: Path) -> None:
    """The recorded `powercap-info` output as sysfs (Zone 0 = intel-rapl:0, Zone 0:1 = intel-rapl:0:1)."""
    text = (samples / "rapl_powercap_x86.txt").read_text()
    block = text[text.index("> powercap-info"):text.index("(powercap-info")]
    zone_dir = None
    for line in block.splitlines():
        field = line.strip()
        if field.startswith("Zone "):
            zone_dir = root / "sys/class/powercap" / ("intel-rapl:" + field.split()[1])
        elif field.startswith("Constraint"):
            zone_dir = None     # constraint fields ("name: long_term") are not zone files
        elif zone_dir is not None and ": " in field:
            key, value = field.split(": ", 1)
            if key in ("name", "energy_uj", "max_energy_range_uj"):
                write(zone_dir / key, value)


def test_rapl_tree_from_recorded_output_counts_only_the_package(device_samples: Path, tmp_path: Path) -> None:
    powercap_tree_from_recorded_info(device_samples, tmp_path)
    assert (tmp_path / "sys/class/powercap/intel-rapl:0:1/energy_uj").read_text().strip() == "5981"
    zones = rapl.find_package_zones(str(tmp_path))
    assert zones == [rapl.RaplZone("package-0", str(tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj"),
                                   262143328850)]


def test_rapl_counter_wraps_at_max_energy_range(device_samples: Path, tmp_path: Path) -> None:
    powercap_tree_from_recorded_info(device_samples, tmp_path)
    energy = tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj"
    sensor = rapl.open_sensor(str(tmp_path), clock=TickingClock())
    assert sensor.name == "rapl:package-0"
    energy.write_text("262143000000\n")
    assert sensor.read().energy_j == pytest.approx((262143000000 - 65997277274) / 1e6)
    energy.write_text("500000\n")           # wrapped: 328850 uJ to the top, then 500000 more
    assert sensor.read().energy_j == pytest.approx((262143328850 - 65997277274 + 500000) / 1e6)


def test_rapl_sums_packages_and_ignores_psys_subzones_and_mmio(tmp_path: Path) -> None:
    powercap = tmp_path / "sys/class/powercap"
    for zone, name, energy in [("intel-rapl:0", "package-0", 1000), ("intel-rapl:1", "package-1", 2000),
                               ("intel-rapl:2", "psys", 9000), ("intel-rapl:0:0", "core", 500),
                               ("intel-rapl-mmio:0", "package-0", 7000)]:
        write(powercap / zone / "name", name)
        write(powercap / zone / "energy_uj", str(energy))
        write(powercap / zone / "max_energy_range_uj", "65532610987")
    sensor = rapl.open_sensor(str(tmp_path), clock=TickingClock())
    assert sensor.name == "rapl:package-0+package-1"
    write(powercap / "intel-rapl:0/energy_uj", "4000")
    write(powercap / "intel-rapl:1/energy_uj", "3000")
    write(powercap / "intel-rapl:2/energy_uj", "99000")
    assert sensor.read().energy_j == pytest.approx((3000 + 1000) / 1e6)


def test_rapl_counter_file_vanishing_is_sensor_gone(device_samples: Path, tmp_path: Path) -> None:
    powercap_tree_from_recorded_info(device_samples, tmp_path)
    sensor = rapl.open_sensor(str(tmp_path))
    (tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj").unlink()
    with pytest.raises(SensorGoneError, match="energy_uj vanished"):
        sensor.read()


def test_rapl_unavailable_without_powercap(tmp_path: Path) -> None:
    with pytest.raises(SensorUnavailableError, match="no intel-rapl package zone"):
        rapl.open_sensor(str(tmp_path))


# --- INA3221 -------------------------------------------------------------------------------------

def jp4_iio_chip(root: Path, chip: str, rails_mw: dict[str, int]) -> Path:
    """JetPack 4 ina3221x IIO layout (Nano path from the layout sample: 6-0040/iio:device0)."""
    device = root / "sys/bus/i2c/drivers/ina3221x" / chip / "iio:device0"
    for k, (label, milliwatts) in enumerate(rails_mw.items()):
        write(device / f"rail_name_{k}", label)
        write(device / f"in_power{k}_input", str(milliwatts))
        write(device / f"in_current{k}_input", "0")
        write(device / f"in_voltage{k}_input", "5000")
    return device


def jp5_hwmon_chip(root: Path, chip: str, hwmon: str, rails: Sequence[tuple[str, int, int]]) -> Path:
    """JetPack 5+ ina3221 hwmon layout: in<k>_label, in<k>_input mV, curr<k>_input mA; in4-7 are shunts."""
    device = root / "sys/bus/i2c/drivers/ina3221" / chip / "hwmon" / hwmon
    for k, (label, millivolts, milliamps) in enumerate(rails, start=1):
        write(device / f"in{k}_label", label)
        write(device / f"in{k}_input", str(millivolts))
        write(device / f"curr{k}_input", str(milliamps))
        write(device / f"curr{k}_crit", "7784")
        write(device / f"in{k + 3}_input", "12345")     # shunt uV: not a rail
    write(device / "in7_label", "sum of shunt voltages")
    write(device / "in7_input", "40000")
    return device


def test_ina3221_jp4_nano_uses_the_input_rail(tmp_path: Path) -> None:
    # Values from the Nano JetPack 4 tegrastats sample, line 1.
    jp4_iio_chip(tmp_path, "6-0040", {"POM_5V_IN": 1022, "POM_5V_GPU": 0, "POM_5V_CPU": 204})
    sensor = ina3221.open_sensor(str(tmp_path), clock=TickingClock())
    assert sensor.name == "ina3221:POM_5V_IN"
    assert sensor.read() == PowerSample(t_ns=100_000_000, power_w=1.022, energy_j=None)


def test_ina3221_jp4_agx_xavier_sums_both_chips(tmp_path: Path) -> None:
    # AGX Xavier: two chips, no input rail; values from the AGX Xavier tegrastats sample, line 1.
    jp4_iio_chip(tmp_path, "1-0040", {"GPU": 0, "CPU": 311, "SOC": 932})
    jp4_iio_chip(tmp_path, "1-0041", {"CV": 0, "VDDRQ": 621, "SYS5V": 1482})
    sensor = ina3221.open_sensor(str(tmp_path))
    assert sensor.name == "ina3221:GPU+CPU+SOC+CV+VDDRQ+SYS5V"
    assert sensor.read().power_w == pytest.approx(3.346)


def test_ina3221_jp5_xavier_nx_multiplies_mv_by_ma(tmp_path: Path) -> None:
    # Xavier NX JetPack 5 path from the layout sample (7-0040/hwmon/hwmon6).
    device = jp5_hwmon_chip(tmp_path, "7-0040", "hwmon6",
                            [("VDD_IN", 5016, 1200), ("VDD_CPU_GPU_CV", 5000, 300), ("VDD_SOC", 5000, 250)])
    sensor = ina3221.open_sensor(str(tmp_path))
    assert sensor.name == "ina3221:VDD_IN"
    assert sensor.read().power_w == pytest.approx(5.016 * 1.2)
    write(device / "curr1_input", "2000")
    assert sensor.read().power_w == pytest.approx(5.016 * 2.0)


def test_ina3221_jp5_agx_orin_skips_nc_and_disabled_channels(tmp_path: Path) -> None:
    # AGX Orin labels from the layout sample: a second chip with NC / VDDQ_VDD2_1V8AO / NC.
    jp5_hwmon_chip(tmp_path, "1-0040", "hwmon1", [("VDD_GPU_SOC", 5000, 468), ("VDD_CPU_CV", 5000, 78),
                                                  ("VIN_SYS_5V0", 5000, 805)])
    second = jp5_hwmon_chip(tmp_path, "1-0041", "hwmon2", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 60),
                                                           ("NC", 0, 0)])
    sensor = ina3221.open_sensor(str(tmp_path))
    assert sensor.name == "ina3221:VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO"
    assert sensor.read().power_w == pytest.approx(5.0 * (0.468 + 0.078 + 0.805 + 0.060))
    write(second / "in2_enable", "0")
    assert [c.label for c in ina3221.find_hwmon_channels(str(tmp_path))] == [
        "VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "NC", "NC"]


def test_ina3221_prefers_hwmon_when_both_drivers_are_present(tmp_path: Path) -> None:
    jp4_iio_chip(tmp_path, "6-0040", {"POM_5V_IN": 999, "POM_5V_GPU": 0, "POM_5V_CPU": 0})
    jp5_hwmon_chip(tmp_path, "7-0040", "hwmon6", [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 1),
                                                  ("VDD_SOC", 5000, 1)])
    assert ina3221.open_sensor(str(tmp_path)).name == "ina3221:VDD_IN"


def test_ina3221_unavailable_without_driver(tmp_path: Path) -> None:
    with pytest.raises(SensorUnavailableError, match="no INA3221 rail"):
        ina3221.open_sensor(str(tmp_path))


# --- tegrastats sampler ------------------------------------------------------------------------------

def fake_tegrastats(root: Path, lines: Sequence[str], args_file: Path, then_sleep_s: float) -> None:
    """A tegrastats stand-in that prints recorded lines 20 ms apart, then exits."""
    lines_file = write(root / "lines.txt", "\n".join(lines))
    make_executable(root / "usr/bin/tegrastats",
                    f'#!/bin/sh\necho "$@" > "{args_file}"\n'
                    f'while IFS= read -r line; do echo "$line"; sleep 0.02; done < "{lines_file}"\n'
                    f"sleep {then_sleep_s}\n")


def test_tegrastats_sampler_runs_the_tool_and_reads_its_lines(device_samples: Path, tmp_path: Path) -> None:
    recorded = (device_samples / "tegrastats_xavier_nx_jp4_jp5.txt").read_text().splitlines()[1:]
    args_file = tmp_path / "args.txt"
    fake_tegrastats(tmp_path, ["NVPM WARN: not a stats line"] + recorded, args_file, then_sleep_s=0.2)
    sensor = tegrastats.open_sensor(str(tmp_path), interval_ms=20)
    try:
        sample = sensor.read()
        assert sample.power_w in (6.140, 4.067, 2.763) and sample.energy_j is None
        assert sensor.name == "tegrastats:VDD_IN"
        deadline = time.monotonic() + 5.0
        while sensor.read().power_w != 2.763 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sensor.read().power_w == 2.763
        assert args_file.read_text().split() == ["--interval", "20"]
        with pytest.raises(SensorGoneError, match="stopped printing"):
            while time.monotonic() < deadline:
                sensor.read()
                time.sleep(0.02)
    finally:
        sensor.close()


def test_tegrastats_sampler_from_a_stream_repeats_the_arrival_time(device_samples: Path) -> None:
    read_end, write_end = os.pipe()
    lines, writer = os.fdopen(read_end), os.fdopen(write_end, "w")
    sensor = tegrastats.TegrastatsSensor(lines, clock=TickingClock(), first_line_timeout_s=2.0)
    writer.write((device_samples / "tegrastats_orin_jp7_thor.txt").read_text().splitlines()[2] + "\n")
    writer.flush()
    first, again = sensor.read(), sensor.read()
    assert first == again == PowerSample(t_ns=50_000_000, power_w=87.426, energy_j=None)
    assert sensor.name == "tegrastats:VIN"
    writer.close()                          # end of stream: the sensor is gone, not stale
    with pytest.raises(SensorGoneError, match="stopped printing"):
        while True:
            sensor.read()
    sensor.close()
    lines.close()


def test_tegrastats_unavailable_off_jetson(tmp_path: Path) -> None:
    with pytest.raises(SensorUnavailableError, match="no tegrastats"):
        tegrastats.open_sensor(str(tmp_path))


# --- Raspberry Pi 5 PMIC ---------------------------------------------------------------------------

def pi_vcgencmd_output(samples: Path, label: str) -> str:
    text = (samples / "rpi5_vcgencmd.txt").read_text()
    body = text[text.index("\n", text.index(f"=== ({label})")) + 1:]
    return body[:body.index("\n=== ")].split("\nNotes:")[0]


def test_pi_pmic_sensor_sums_rails_through_the_runner(device_samples: Path, tmp_path: Path) -> None:
    vcgencmd = make_executable(tmp_path / "usr/bin/vcgencmd")
    calls = []

    def runner(argv: Sequence[str]) -> str:
        calls.append(list(argv))
        return pi_vcgencmd_output(device_samples, "A")

    sensor = pi_pmic.open_sensor(str(tmp_path), runner=runner, clock=TickingClock())
    sample = sensor.read()
    assert sample.power_w == pytest.approx(7.2398188, abs=1e-6)
    assert sample.t_ns == (150_000_000 + 200_000_000) // 2     # middle of the vcgencmd call
    assert calls[-1] == [str(vcgencmd), "pmic_read_adc"]


def test_pi_pmic_unavailable_on_pre_pi5_firmware(device_samples: Path, tmp_path: Path) -> None:
    make_executable(tmp_path / "usr/bin/vcgencmd")
    error = pi_vcgencmd_output(device_samples, "E").strip()
    with pytest.raises(SensorUnavailableError, match="Command not registered"):
        pi_pmic.open_sensor(str(tmp_path), runner=lambda argv: error)


def test_pi_pmic_runs_the_real_executable_under_root(device_samples: Path, tmp_path: Path) -> None:
    output = write(tmp_path / "pmic.txt", pi_vcgencmd_output(device_samples, "A"))
    make_executable(tmp_path / "usr/bin/vcgencmd", f'#!/bin/sh\ncat "{output}"\n')
    assert open_named("pi_pmic", str(tmp_path)).read().power_w == pytest.approx(7.2398188, abs=1e-6)


# --- NVML (pynvml is optional: a stand-in module checks the units and the error paths) ---------------

def fake_pynvml(power_mw: int, energy_mj: int | None, init_error: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def energy(handle: object) -> int:
        if energy_mj is None:
            raise NVMLError("Not Supported")
        return energy_mj

    def init() -> None:
        if init_error:
            raise NVMLError("Driver Not Loaded")

    module.NVMLError = NVMLError                                    # type: ignore[attr-defined]
    module.nvmlInit = init                                          # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None                              # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"  # type: ignore[attr-defined]
    module.nvmlDeviceGetPowerUsage = lambda handle: power_mw        # type: ignore[attr-defined]
    module.nvmlDeviceGetTotalEnergyConsumption = energy             # type: ignore[attr-defined]
    return module


def test_nvml_converts_milliwatts_and_millijoules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(power_mw=45250, energy_mj=123456789))
    sensor = nvml.open_sensor(clock=TickingClock())
    assert sensor.name == "nvml:gpu0"
    assert sensor.read() == PowerSample(t_ns=50_000_000, power_w=45.25, energy_j=123456.789)
    sensor.close()


def test_nvml_pre_volta_has_power_but_no_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(power_mw=30000, energy_mj=None))
    assert nvml.open_sensor().read().energy_j is None


def test_nvml_unavailable_when_init_fails_or_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(0, 0, init_error=True))
    with pytest.raises(SensorUnavailableError, match="nvmlInit failed: Driver Not Loaded"):
        nvml.open_sensor()
    monkeypatch.setitem(sys.modules, "pynvml", None)   # makes `import pynvml` raise ImportError
    with pytest.raises(SensorUnavailableError, match="nvidia-ml-py"):
        nvml.open_sensor()


# --- thermal zones ---------------------------------------------------------------------------------

def thermal_zone(root: Path, number: int, zone_type: str, milli_c: str | None) -> None:
    zone = root / "sys/class/thermal" / f"thermal_zone{number}"
    write(zone / "type", zone_type)
    if milli_c is not None:
        write(zone / "temp", milli_c)


def test_thermal_zones_skip_off_sensors_and_number_repeated_types(tmp_path: Path) -> None:
    thermal_zone(tmp_path, 0, "cpu-thermal", "44562")
    thermal_zone(tmp_path, 1, "gpu-thermal", "-256000")    # Orin: sensor powered off
    thermal_zone(tmp_path, 2, "acpitz", "27800")
    thermal_zone(tmp_path, 10, "acpitz", "29800")
    thermal_zone(tmp_path, 3, "pmic-die", None)             # unreadable temp
    assert thermal.read_temperatures(str(tmp_path)) == {"cpu-thermal": 44.562, "acpitz:2": 27.8,
                                                        "acpitz:10": 29.8}
    assert thermal.open_sensor(str(tmp_path)).read()["cpu-thermal"] == 44.562


# --- registry and probe ------------------------------------------------------------------------------

def test_every_module_in_agent_sensors_is_registered() -> None:
    modules = {info.name for info in pkgutil.iter_modules(edgefarm.agent.sensors.__path__)} - NOT_SOURCES
    assert modules == set(REGISTRY)
    assert all(REGISTRY[name] == f"edgefarm.agent.sensors.{name}" for name in modules)
    assert set(POWER_SENSORS) <= set(REGISTRY)


def test_unknown_sensor_names_list_the_valid_ones() -> None:
    with pytest.raises(UnknownSensorError, match="valid sensors: ina3221, nvml, pi_pmic, rapl, tegrastats"):
        open_named("ina219")
    with pytest.raises(UnknownSensorError, match="not a power sensor"):
        probe("/", names=["thermal"])


def test_probe_finds_the_jetson_rail_and_reports_what_is_missing(tmp_path: Path) -> None:
    jp5_hwmon_chip(tmp_path, "1-0040", "hwmon3", [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 2),
                                                  ("VDD_SOC", 5000, 3)])
    thermal_zone(tmp_path, 0, "cpu-thermal", "40000")
    sensor = probe(str(tmp_path))
    assert sensor is not None and sensor.name == "ina3221:VDD_IN"
    assert available_sensors(str(tmp_path)) == ["ina3221", "thermal"]
    reasons = unavailable_reasons(str(tmp_path))
    assert "no intel-rapl package zone" in reasons["rapl"] and "not a Raspberry Pi" in reasons["pi_pmic"]


def test_probe_on_an_empty_tree_is_none(tmp_path: Path) -> None:
    assert probe(str(tmp_path)) is None
    assert available_sensors(str(tmp_path)) == []
