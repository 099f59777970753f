"""Sensor parsers against the outputs recorded on real boards: tests/data/device-samples/, copied from the
team's shared/device-samples with each file's source header, so a plain clone runs every test."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgefarm.agent.sensors import ina3221, nvml, pi_pmic, rapl
from edgefarm.agent.sensors.pi_pmic import parse_get_throttled, parse_pmic_read_adc
from edgefarm.agent.sensors.tegrastats import RailPower, TegrastatsLine, parse_tegrastats_line

TEGRASTATS_FILES = [
    "tegrastats_nano_jp4.txt",
    "tegrastats_tx1_tx2_jp3_jp4.txt",
    "tegrastats_agx_xavier.txt",
    "tegrastats_xavier_nx_jp4_jp5.txt",
    "tegrastats_orin_jp5_jp6.txt",
    "tegrastats_orin_jp7_thor.txt",
]


def recorded_lines(samples: Path, name: str) -> list[str]:
    """The verbatim lines of a sample file, without its '# source' header."""
    return [line for line in (samples / name).read_text().splitlines()[1:] if line.strip()]


def tegrastats(samples: Path, name: str, index: int) -> TegrastatsLine:
    return parse_tegrastats_line(recorded_lines(samples, name)[index])


def section(samples: Path, name: str, label: str) -> str:
    """The text under a '=== (X) ... ===' heading, up to the next heading."""
    text = (samples / name).read_text()
    start = text.index(f"=== ({label})")
    body = text[text.index("\n", start) + 1:]
    end = body.find("\n=== ")
    return body if end < 0 else body[:end]


# --- tegrastats: every line of every generation --------------------------------------------------

def test_every_tegrastats_sample_file_is_covered(device_samples: Path) -> None:
    assert sorted(path.name for path in device_samples.glob("tegrastats_*.txt")) == sorted(TEGRASTATS_FILES)


@pytest.mark.parametrize("name", TEGRASTATS_FILES)
def test_every_tegrastats_line_parses_with_rails_temps_and_ram(device_samples: Path, name: str) -> None:
    for text in recorded_lines(device_samples, name):
        line = parse_tegrastats_line(text)
        assert line.ram_total_mb > line.ram_used_mb > 0
        assert len(line.rails) >= 3
        assert line.temps_c and all(-40.0 < value < 120.0 for value in line.temps_c.values())
        assert line.input_power_mw() > 0


def test_nano_jp4_rails_without_unit_suffix(device_samples: Path) -> None:
    first = tegrastats(device_samples, "tegrastats_nano_jp4.txt", 0)
    assert first.timestamp == ""
    assert (first.ram_used_mb, first.ram_total_mb) == (534, 3964)
    assert first.rails == {"POM_5V_IN": RailPower(1022, 1022), "POM_5V_GPU": RailPower(0, 0),
                           "POM_5V_CPU": RailPower(204, 204)}
    assert first.temps_c == {"PLL": 34.0, "CPU": 36.5, "PMIC": 100.0, "GPU": 36.0, "AO": 39.5,
                             "thermal": 36.25}
    assert (first.gr3d_percent, first.gr3d_freq_mhz) == (0, (76,))
    assert first.input_rails() == ["POM_5V_IN"] and first.input_power_mw() == 1022.0


def test_nano_jp4_non_root_line_has_rails_but_no_gpu_frequency(device_samples: Path) -> None:
    line = tegrastats(device_samples, "tegrastats_nano_jp4.txt", 1)
    assert (line.gr3d_percent, line.gr3d_freq_mhz) == (0, ())
    assert line.rails["POM_5V_IN"] == RailPower(900, 943)
    assert tegrastats(device_samples, "tegrastats_nano_jp4.txt", 2).rails["POM_5V_CPU"] == RailPower(366, 406)


def test_tx1_and_tx2_jetpack3_and_jetpack4_rail_names(device_samples: Path) -> None:
    tx1 = tegrastats(device_samples, "tegrastats_tx1_tx2_jp3_jp4.txt", 0)
    assert tx1.rails["VDD_IN"] == RailPower(2532, 2698) and tx1.input_power_mw() == 2532.0
    tx2_jp3 = tegrastats(device_samples, "tegrastats_tx1_tx2_jp3_jp4.txt", 1)
    assert list(tx2_jp3.rails) == ["VDD_IN", "VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_WIFI", "VDD_DDR"]
    assert tx2_jp3.temps_c["BCPU"] == 41.0 and tx2_jp3.gr3d_freq_mhz == (140,)
    tx2_jp4 = tegrastats(device_samples, "tegrastats_tx1_tx2_jp3_jp4.txt", 2)
    assert tx2_jp4.rails["VDD_4V0_WIFI"] == RailPower(633, 527)
    assert tx2_jp4.input_rails() == ["VDD_IN"] and tx2_jp4.input_power_mw() == 3140.0
    tx2_jp4_later = tegrastats(device_samples, "tegrastats_tx1_tx2_jp3_jp4.txt", 3)
    assert tx2_jp4_later.rails["VDD_SYS_DDR"] == RailPower(883, 883)


def test_agx_xavier_has_no_input_rail_so_every_rail_is_summed(device_samples: Path) -> None:
    line = tegrastats(device_samples, "tegrastats_agx_xavier.txt", 0)
    assert line.rails["SOC"] == RailPower(932, 932) and line.rails["SYS5V"] == RailPower(1482, 1482)
    assert line.input_rails() == ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]
    assert line.input_power_mw() == 0 + 311 + 932 + 0 + 621 + 1482
    assert line.temps_c["Tdiode"] == 40.0 and line.temps_c["thermal"] == 36.9
    assert (line.gr3d_percent, line.gr3d_freq_mhz) == (0, (318,))
    second = tegrastats(device_samples, "tegrastats_agx_xavier.txt", 1)
    assert second.rails["GPU"] == RailPower(0, 16) and second.input_power_mw() == 3229.0


def test_xavier_nx_jetpack4_and_jetpack5_formats(device_samples: Path) -> None:
    jp4 = tegrastats(device_samples, "tegrastats_xavier_nx_jp4_jp5.txt", 0)
    assert jp4.timestamp == "" and jp4.rails["VDD_IN"] == RailPower(6140, 5510)
    assert tegrastats(device_samples, "tegrastats_xavier_nx_jp4_jp5.txt", 1).gr3d_percent == 62
    jp5 = tegrastats(device_samples, "tegrastats_xavier_nx_jp4_jp5.txt", 2)
    assert jp5.timestamp == "07-09-2024 13:31:31"
    assert jp5.rails == {"VDD_IN": RailPower(2763, 2846), "VDD_CPU_GPU_CV": RailPower(650, 670),
                         "VDD_SOC": RailPower(650, 711)}
    assert (jp5.gr3d_percent, jp5.gr3d_freq_mhz) == (0, (114,))
    assert jp5.temps_c["PMIC"] == 50.0 and jp5.input_power_mw() == 2763.0


def test_orin_nx_jetpack6_lowercase_temps_and_mw_suffix(device_samples: Path) -> None:
    line = tegrastats(device_samples, "tegrastats_orin_jp5_jp6.txt", 0)
    assert line.timestamp == "05-15-2025 18:30:28"
    assert (line.ram_used_mb, line.ram_total_mb) == (6982, 7620)
    assert (line.gr3d_percent, line.gr3d_freq_mhz) == (84, (713,))
    assert line.rails["VDD_IN"] == RailPower(17946, 15710)
    assert line.rails["VDD_CPU_GPU_CV"] == RailPower(8896, 7585)
    assert line.temps_c["tj"] == 65.562 and line.temps_c["cv2"] == 60.875
    assert line.input_power_mw() == 17946.0


def test_agx_orin_skips_powered_off_sensors_and_not_connected_rails(device_samples: Path) -> None:
    line = tegrastats(device_samples, "tegrastats_orin_jp5_jp6.txt", 1)
    assert (line.gr3d_percent, line.gr3d_freq_mhz) == (0, (0, 0))
    # CV0, CV1, CV2 and GPU print -256C: sensor powered off, not a temperature.
    assert line.temps_c == {"CPU": 44.562, "Tboard": 32.0, "SOC2": 40.093, "Tdiode": 33.0,
                            "SOC0": 41.093, "tj": 44.343, "SOC1": 41.25}
    assert "NC" not in line.rails
    assert line.rails["VIN_SYS_5V0"] == RailPower(4025, 4025)
    # No VDD_IN on AGX Orin (VIN_SYS_5V0 is the I/O 5 V rail): the connected rails are summed.
    assert line.input_rails() == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert line.input_power_mw() == 2340 + 390 + 4025 + 301


def test_jetpack7_agx_orin_three_value_rails_and_temperature_limits(device_samples: Path) -> None:
    line = tegrastats(device_samples, "tegrastats_orin_jp7_thor.txt", 0)
    assert line.timestamp == "07-25-2026 09:08:28"
    assert line.rails["VDD_GPU_SOC"] == RailPower(5139, 5139, 5139)
    assert line.temps_c == {"cpu": 52.968, "soc2": 48.406, "soc0": 49.531, "gpu": 47.625}
    assert (line.gr3d_percent, line.gr3d_freq_mhz) == (12, (1300, 1300))
    assert line.input_power_mw() == 5139 + 3268 + 5500


def test_jetpack7_agx_thor_has_vin_and_no_gr3d(device_samples: Path) -> None:
    line = tegrastats(device_samples, "tegrastats_orin_jp7_thor.txt", 1)
    assert (line.ram_used_mb, line.ram_total_mb) == (36529, 125749)
    assert (line.gr3d_percent, line.gr3d_freq_mhz) == (None, ())
    assert line.rails["VIN"] == RailPower(87426, 43713, 87426)
    assert line.rails["VDD_GPU"] == RailPower(37528, 37528, 37528)
    assert line.temps_c["soc345"] == 63.281
    assert line.input_rails() == ["VIN"] and line.input_power_mw() == 87426.0


def test_thor_gr3d_without_utilisation_as_described_in_the_samples_readme() -> None:
    # README of the samples: on Thor "GR3D_FREQ @[f,f,f] or absent"; only the absent form was recorded.
    line = parse_tegrastats_line("RAM 1/2MB GR3D_FREQ @[1575,1575,1575] cpu@40C VIN 10mW/10mW/10mW")
    assert (line.gr3d_percent, line.gr3d_freq_mhz) == (None, (1575, 1575, 1575))


def test_a_line_that_is_not_tegrastats_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a tegrastats line"):
        parse_tegrastats_line("NVPM WARN: fan mode is not set!")


# --- INA3221: rail choice for every board the layout file names ---------------------------------

def test_ina3221_total_rail_choice_for_every_known_label_set(device_samples: Path) -> None:
    text = (device_samples / "jetson_ina3221_sysfs_layout.txt").read_text()
    known = text[text.index("Known labels:"):]
    nano = re.search(r"Nano: (\S+)/(\S+)/(\S+);", known).groups()
    assert ina3221.choose_total_rails(nano) == ["POM_5V_IN"]
    nx = re.search(r"Xavier NX, Orin NX, Orin Nano: (\S+)/(\S+)/(\S+);", known).groups()
    assert ina3221.choose_total_rails(nx) == ["VDD_IN"]
    agx_orin = re.search(r"AGX Orin: (\S+)/(\S+)/(\S+) \(\+ 2nd chip: (\S+)/(\S+)/(\S+)\)", known).groups()
    assert ina3221.choose_total_rails(agx_orin) == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0",
                                                    "VDDQ_VDD2_1V8AO"]
    xavier = re.search(r"AGX Xavier \(tegrastats names\): ([\w/]+);", known).group(1).split("/")
    assert len(xavier) == 6
    assert ina3221.choose_total_rails(xavier) == list(xavier)
    thor = re.search(r"AGX Thor: (\S+)/(\S+)/(\S+) on the INA3221", known).groups()
    assert ina3221.choose_total_rails(thor) == ["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"]


def test_ina3221_module_paths_match_the_recorded_layouts(device_samples: Path) -> None:
    text = (device_samples / "jetson_ina3221_sysfs_layout.txt").read_text()
    assert "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_voltage0_input" in text   # JetPack 4
    assert "/sys/bus/i2c/drivers/ina3221/7-0040/hwmon/hwmon6" in text                    # JetPack 5
    assert ina3221.IIO_DEVICES == "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
    assert ina3221.HWMON_DEVICES == "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"


# --- RAPL: wraparound rule and the counter ranges recorded ---------------------------------------

def test_rapl_wraparound_rule_and_recorded_ranges(device_samples: Path) -> None:
    text = (device_samples / "rapl_powercap_x86.txt").read_text()
    assert "energy = end - start + max_energy_range_uj" in text
    intel, amd = 262143328850, 65532610987
    assert str(intel) in text and str(amd) in text
    assert rapl.unwrapped_delta_uj(intel - 1_000_000, 2_000_000, intel) == 3_000_000
    assert rapl.unwrapped_delta_uj(amd - 5, 10, amd) == 15
    assert rapl.unwrapped_delta_uj(65997277274, 65998277274, intel) == 1_000_000


# --- NVML: units ---------------------------------------------------------------------------------

def test_nvml_units_match_the_documented_ones(device_samples: Path) -> None:
    text = (device_samples / "nvml_power_energy_units.txt").read_text()
    assert "power usage for this GPU in milliwatts" in text
    assert "total energy consumption for this GPU in millijoules (mJ)" in text
    assert nvml.MW_PER_W == 1000.0 and nvml.MJ_PER_J == 1000.0


# --- Raspberry Pi 5: pmic_read_adc and get_throttled ---------------------------------------------

def test_pi5_pmic_read_adc_pairs_rails_by_name(device_samples: Path) -> None:
    reading = parse_pmic_read_adc(section(device_samples, "rpi5_vcgencmd.txt", "A"))
    assert len(reading.paired_rails()) == 12
    assert reading.currents_a["VDD_CORE"] == 6.22421 and reading.volts_v["VDD_CORE"] == 0.861733
    assert reading.currents_a["3V3_DAC"] == 0.00006105      # channel 17, listed out of order
    assert reading.volts_v["EXT5V"] == 5.09066 and "EXT5V" not in reading.currents_a
    assert reading.volts_v["BATT"] == 0.0 and "BATT" not in reading.paired_rails()
    expected_w = (3.699776 * 0.09368929 + 3.310033 * 0.0878337 + 1.805126 * 0.1805471
                  + 1.104761 * 0.2254398 + 0.6014646 * 0.0666672 + 1.110255 * 0.1756674
                  + 0.8014644 * 0.376709 + 0.861733 * 6.22421 + 3.313183 * 0.00006105
                  + 3.306773 * 0.0003663 + 0.8002922 * 0.0030525 + 5.08664 * 0.0241758)
    assert reading.power_w() == pytest.approx(expected_w, rel=1e-12)
    assert reading.power_w() == pytest.approx(7.2398188, abs=1e-6)


def test_pi5_truncated_output_has_currents_but_no_power(device_samples: Path) -> None:
    reading = parse_pmic_read_adc(section(device_samples, "rpi5_vcgencmd.txt", "B"))
    assert reading.currents_a["0V8_SYS"] == 0.2693567      # this firmware says 0V8_SYS, (A) says 0V8_SW
    assert reading.currents_a["DDR_VDDQ"] == 0.0
    assert reading.volts_v == {}
    with pytest.raises(ValueError, match="both a _V and an _A"):
        reading.power_w()


def test_pre_pi5_firmware_error_is_reported(device_samples: Path) -> None:
    text = section(device_samples, "rpi5_vcgencmd.txt", "E").strip()
    with pytest.raises(ValueError, match="Command not registered"):
        parse_pmic_read_adc(text)


def test_get_throttled_recorded_output(device_samples: Path) -> None:
    notes = section(device_samples, "rpi5_vcgencmd.txt", "D")
    state = parse_get_throttled(notes[notes.index("throttled="):])
    assert (state.raw, state.flags, state.active_now) == (0, [], False)


def test_get_throttled_every_bit_in_the_recorded_table(device_samples: Path) -> None:
    table = section(device_samples, "rpi5_vcgencmd.txt", "C")
    rows = re.findall(r"^\s*(\d+)\|0x([0-9a-fA-F]+)\|(.+)$", table, re.MULTILINE)
    assert len(rows) == 8
    for bit, hex_value, meaning in rows:
        state = parse_get_throttled(f"throttled=0x{hex_value}")
        assert state.raw == 1 << int(bit)
        assert state.flags == [pi_pmic.THROTTLE_BITS[int(bit)]], meaning
        assert state.active_now == (int(bit) < 4)


def test_get_throttled_common_values_from_the_readme(device_samples: Path) -> None:
    assert "0x50005 = under-voltage + throttled now" in section(device_samples, "rpi5_vcgencmd.txt", "C")
    assert parse_get_throttled("throttled=0x50000").flags == ["under_voltage_occurred", "throttled_occurred"]
    now = parse_get_throttled("throttled=0x50005")
    assert now.flags == ["under_voltage", "throttled", "under_voltage_occurred", "throttled_occurred"]
    assert now.active_now
    assert parse_get_throttled("throttled=0x100000").flags == ["bit20"]
