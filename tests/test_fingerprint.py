"""Environment fingerprint probes against fake trees and recorded command outputs."""
from __future__ import annotations

import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from edgefarm.agent import fingerprint
from edgefarm.agent.fingerprint import EnvironmentFingerprint, collect_fingerprint, throttled_between
from edgefarm.agent.sensors.base import CommandError, find_executable, run_command

# Recorded outputs of the Jetson tools (not in ../shared/device-samples; sources named per string;
# the trailing space jetson_clocks prints after each cpu line is stripped).
# `nvpmodel -q` on an AGX Thor devkit, JetPack 7 (anduril/jetpack-nixos pull request #460).
NVPMODEL_THOR = "NV Power Mode: MAXN\n0\n"
# `nvpmodel -q` on an Orin NX, JetPack 6.2 (a Jetson environment manifest in the code index).
NVPMODEL_ORIN_NX = "NV Power Mode: MAXN_SUPER\n2\n"
# `sudo nvpmodel -q` on a Jetson Nano (Korean setup notes in the code index; the author's inline
# "# ..." annotation after MAXN removed): a warning line comes first.
NVPMODEL_NANO = "NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN\n0\n"
# `jetson_clocks --show` on a Jetson Nano in 5W mode, before and after running `jetson_clocks`
# (docstring of a public Python file in the code index). 5W pins the CPUs by itself; only the
# GPU range and the EMC override show jetson_clocks.
JETSON_CLOCKS_NANO_5W_BEFORE = """\
SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-1
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=1 c7=1
cpu2: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=1 c7=1
cpu3: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=614400000 CurrentFreq=460800000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: speed=0
NV Power Mode: 5W
"""
JETSON_CLOCKS_NANO_5W_AFTER = """\
SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-1
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu2: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu3: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
GPU MinFreq=614400000 MaxFreq=614400000 CurrentFreq=614400000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: speed=255
NV Power Mode: 5W
"""
# `jetson_clocks --show` on an Orin Nano Super, L4T R36.4.3 (a Jetson environment manifest in the
# code index): JetPack 6 prints two spaces after "cpuN:" and extra TPC/FAN lines.
JETSON_CLOCKS_ORIN_NANO_JP6 = """\
SOC family:tegra234  Machine:NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super
Online CPUs: 0-5
cpu0:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1497600 CurrentFreq=1497600 IdleStates: WFI=1 c7=1
cpu1:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1497600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
cpu2:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1497600 CurrentFreq=1344000 IdleStates: WFI=1 c7=1
cpu3:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1497600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
cpu4:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1497600 CurrentFreq=729600 IdleStates: WFI=1 c7=1
cpu5:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1497600 CurrentFreq=729600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=612000000 CurrentFreq=306000000
Active GPU TPCs: 4
EMC MinFreq=204000000 MaxFreq=2133000000 CurrentFreq=2133000000 FreqOverride=0
FAN Dynamic Speed Control=kernel hwmon0_pwm1=88
NV Power Mode: 15W
"""
NVPMODEL_ORIN_NANO_JP6 = "NV Power Mode: 15W\n0\n"     # same manifest

Runner = Callable[[Sequence[str]], str]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def install_tool(root: Path, relative: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def recorded_runner(outputs: dict[str, str], calls: list[str] | None = None) -> Runner:
    """Answers "<tool> <args>" with its recorded output; an unknown command fails like a real one."""
    def run(argv: Sequence[str]) -> str:
        command = " ".join([Path(argv[0]).name] + list(argv[1:]))
        if calls is not None:
            calls.append(command)
        if command not in outputs:
            raise CommandError(f"{command} exited 1")
        return outputs[command]
    return run


def cpufreq(root: Path, governor: str, cur_khz: int, max_khz: int) -> None:
    policy = root / "sys/devices/system/cpu/cpu0/cpufreq"
    write(policy / "scaling_governor", governor)
    write(policy / "scaling_cur_freq", str(cur_khz))
    write(policy / "cpuinfo_max_freq", str(max_khz))


def thermal_zone(root: Path, number: int, zone_type: str, milli_c: int) -> None:
    write(root / f"sys/class/thermal/thermal_zone{number}/type", zone_type)
    write(root / f"sys/class/thermal/thermal_zone{number}/temp", str(milli_c))


def jetson_tree(root: Path) -> None:
    cpufreq(root, "schedutil", 1497600, 1497600)
    thermal_zone(root, 0, "cpu-thermal", 44562)
    thermal_zone(root, 1, "gpu-thermal", -256000)      # powered off: not a temperature
    thermal_zone(root, 2, "tj-thermal", 44343)
    install_tool(root, "usr/sbin/nvpmodel")
    install_tool(root, "usr/bin/jetson_clocks")


def test_jetson_fingerx86from_recorded_outputs(tmp_path: Path) -> None:
    jetson_tree(tmp_path)
    runner = recorded_runner({"nvpmodel -q": NVPMODEL_ORIN_NANO_JP6,
                              "jetson_clocks --show": JETSON_CLOCKS_ORIN_NANO_JP6})
    assert collect_fingerprint(str(tmp_path), runner) == EnvironmentFingerprint(
        cpu_governor="schedutil", cpu_cur_freq_khz=1497600, cpu_max_freq_khz=1497600,
        nvpmodel_mode="15W", jetson_clocks="off",
        temps_c={"cpu-thermal": 44.562, "tj-thermal": 44.343}, throttled=False, throttle_flags=[])


@pytest.mark.parametrize("output, mode", [(NVPMODEL_THOR, "MAXN"), (NVPMODEL_ORIN_NX, "MAXN_SUPER"),
                                          (NVPMODEL_NANO, "MAXN"), (NVPMODEL_ORIN_NANO_JP6, "15W"),
                                          ("", "")])
def test_nvpmodel_query_mode(output: str, mode: str) -> None:
    assert fingerprint.parse_nvpmodel_query(output) == mode


@pytest.mark.parametrize("output, state", [(JETSON_CLOCKS_NANO_5W_BEFORE, "off"),
                                           (JETSON_CLOCKS_NANO_5W_AFTER, "on"),
                                           (JETSON_CLOCKS_ORIN_NANO_JP6, "off"),
                                           ("", ""),
                                           ("Error: must be run as root\n", "")])
def test_jetson_clocks_state(output: str, state: str) -> None:
    assert fingerprint.parse_jetson_clocks_show(output) == state


def test_jetson_clocks_needing_root_is_unknown_not_off(tmp_path: Path) -> None:
    jetson_tree(tmp_path)
    runner = recorded_runner({"nvpmodel -q": NVPMODEL_THOR})       # jetson_clocks --show fails
    assert fingerprint.collect_jetson_clocks(str(tmp_path), runner) == ""
    assert fingerprint.collect_nvpmodel_mode(str(tmp_path), runner) == "MAXN"


def test_pi_fingerx86decodes_get_throttled(device_samples: Path, tmp_path: Path) -> None:
    recorded = (device_samples / "rpi5_vcgencmd.txt").read_text()
    get_throttled = recorded[recorded.index("vcgencmd get_throttled\n") + 23:].split("\n")[0]
    assert get_throttled == "throttled=0x0" and "0x50005 = under-voltage + throttled now" in recorded
    cpufreq(tmp_path, "ondemand", 1500000, 2400000)
    thermal_zone(tmp_path, 0, "cpu-thermal", 46200)
    install_tool(tmp_path, "usr/bin/vcgencmd")
    healthy = collect_fingerprint(str(tmp_path), recorded_runner({"vcgencmd get_throttled": get_throttled}))
    assert (healthy.throttled, healthy.throttle_flags) == (False, [])
    assert (healthy.cpu_governor, healthy.cpu_max_freq_khz, healthy.temps_c) == ("ondemand", 2400000,
                                                                                  {"cpu-thermal": 46.2})
    assert (healthy.nvpmodel_mode, healthy.jetson_clocks) == ("", "")
    starved_runner = recorded_runner({"vcgencmd get_throttled": "throttled=0x50005\n"})
    starved = collect_fingerprint(str(tmp_path), starved_runner)
    assert starved.throttled
    assert starved.throttle_flags == ["under_voltage", "throttled",
                                      "under_voltage_occurred", "throttled_occurred"]


def test_x86_thermal_throttle_counters(tmp_path: Path) -> None:
    cpufreq(tmp_path, "powersave", 800000, 4800000)
    for cpu, core_count in enumerate([3, 0, 4, 0]):
        counters = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle"
        write(counters / "core_throttle_count", str(core_count))
        write(counters / "package_throttle_count", "12")      # the package's count, on every CPU
        write(counters / "core_throttle_total_time_ms", "999")
    assert fingerprint.collect_cpu_throttle_counts(str(tmp_path)) == {
        "core_throttle_count": 7, "package_throttle_count": 12}
    x86 = collect_fingerprint(str(tmp_path), recorded_runner({}))
    assert x86.throttle_flags == ["core_throttle_count=7", "package_throttle_count=12"]
    assert not x86.throttled     # counters since boot say nothing about now


def test_missing_everything_gives_empty_values_and_runs_no_command(tmp_path: Path) -> None:
    calls: list[str] = []
    assert collect_fingerprint(str(tmp_path), recorded_runner({}, calls)) == EnvironmentFingerprint(
        cpu_governor="", cpu_cur_freq_khz=0, cpu_max_freq_khz=0, nvpmodel_mode="", jetson_clocks="",
        temps_c={}, throttled=False, throttle_flags=[])
    assert calls == []


def test_unreadable_frequency_is_zero_not_a_guess(tmp_path: Path) -> None:
    write(tmp_path / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "<unsupported>")
    assert fingerprint.collect_cpu_cur_freq_khz(str(tmp_path)) == 0


def base_print(**changes: object) -> EnvironmentFingerprint:
    fields = dict(cpu_governor="schedutil", cpu_cur_freq_khz=1, cpu_max_freq_khz=1, nvpmodel_mode="MAXN",
                  jetson_clocks="on", temps_c={}, throttled=False, throttle_flags=[])
    fields.update(changes)
    return EnvironmentFingerprint(**fields)  # type: ignore[arg-type]


def test_throttled_between_two_fingerprints() -> None:
    calm = base_print(throttle_flags=["core_throttle_count=7"])
    assert not throttled_between(calm, calm)
    assert throttled_between(calm, base_print(throttle_flags=["core_throttle_count=9"]))
    assert throttled_between(base_print(), base_print(throttle_flags=["package_throttle_count=1"]))
    assert throttled_between(base_print(), base_print(throttled=True))
    assert throttled_between(base_print(throttle_flags=["under_voltage_occurred"]),
                             base_print(throttle_flags=["under_voltage_occurred", "throttled_occurred"]))
    assert not throttled_between(base_print(throttle_flags=["throttled_occurred"]),
                                 base_print(throttle_flags=["throttled_occurred"]))


def test_default_runner_returns_stdout_and_raises_oserror_on_failure(tmp_path: Path) -> None:
    assert run_command(["sh", "-c", "echo 'NV Power Mode: MAXN'"]) == "NV Power Mode: MAXN\n"
    with pytest.raises(CommandError, match="exited 3: needs root"):
        run_command(["sh", "-c", "echo needs root >&2; exit 3"])
    with pytest.raises(CommandError, match="timed out"):
        run_command(["sleep", "5"], timeout_s=0.05)
    with pytest.raises(OSError):
        run_command([str(tmp_path / "no-such-tool")])


def test_tools_are_found_under_root_only_when_executable(tmp_path: Path) -> None:
    write(tmp_path / "usr/bin/tegrastats", "not executable")
    assert find_executable("tegrastats", str(tmp_path)) is None
    install_tool(tmp_path, "usr/sbin/nvpmodel")
    assert find_executable("nvpmodel", str(tmp_path)) == str(tmp_path / "usr/sbin/nvpmodel")
