"""What the board was like when a result was measured: clocks, power mode, temperatures, throttling.

Small collect_* probes in the pyperf style. A missing file or tool yields "" / 0 / empty, never a
guessed value. Every probe takes `root` (tests point it at a fake tree) and commands go through one
injectable runner (tests feed it recorded outputs). Two results are comparable only when their
fingerprints match on the fields that matter; take one before and one after the run.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from edgefarm.agent.sensors.base import CommandRunner, find_executable, read_int, read_text, run_command
from edgefarm.agent.sensors.pi_pmic import read_throttle_state
from edgefarm.agent.sensors.thermal import read_temperatures

CPUFREQ = "sys/devices/system/cpu/cpu0/cpufreq"
# x86 only: per-CPU counters of thermal throttling events since boot.
THROTTLE_COUNTS = "sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count"

_NV_POWER_MODE = re.compile(r"^NV Power Mode:\s*(.+?)\s*$", re.MULTILINE)
_CLOCKS_CPU = re.compile(r"^\s*cpu\d+:\s+Online=(\d)\s.*?MinFreq=(\d+) MaxFreq=(\d+)", re.MULTILINE)
_CLOCKS_GPU = re.compile(r"^\s*GPU MinFreq=(\d+) MaxFreq=(\d+)", re.MULTILINE)
_CLOCKS_EMC_OVERRIDE = re.compile(r"^\s*EMC .*FreqOverride=(\d)", re.MULTILINE)
_COUNTER_FLAG = re.compile(r"^(\w+_throttle_count)=(\d+)$")


@dataclass(frozen=True)
class EnvironmentFingerprint:
    cpu_governor: str           # cpu0's scaling_governor
    cpu_cur_freq_khz: int
    cpu_max_freq_khz: int
    nvpmodel_mode: str          # Jetson power mode name, e.g. "MAXN", "15W"
    jetson_clocks: str          # "on" (clocks pinned at max), "off", "" = unknown (not a Jetson, not root)
    temps_c: dict[str, float]
    throttled: bool             # throttling in effect now (Pi get_throttled bits 0-3)
    throttle_flags: list[str]   # Pi flag names, plus x86 "core_throttle_count=N" counters since boot


def _read_text_or_empty(path: str) -> str:
    try:
        return read_text(path)
    except OSError:
        return ""


def _read_int_or_zero(path: str) -> int:
    try:
        return read_int(path)
    except (OSError, ValueError):
        return 0


def _run_tool(name: str, args: list[str], root: str, runner: CommandRunner) -> str:
    """The tool's stdout, or "" where it is not installed or fails (jetson_clocks needs root)."""
    executable = find_executable(name, root)
    if executable is None:
        return ""
    try:
        return runner([executable] + args)
    except OSError:
        return ""


def collect_cpu_governor(root: str = "/") -> str:
    return _read_text_or_empty(os.path.join(root, CPUFREQ, "scaling_governor"))


def collect_cpu_cur_freq_khz(root: str = "/") -> int:
    return _read_int_or_zero(os.path.join(root, CPUFREQ, "scaling_cur_freq"))


def collect_cpu_max_freq_khz(root: str = "/") -> int:
    return _read_int_or_zero(os.path.join(root, CPUFREQ, "cpuinfo_max_freq"))


def parse_nvpmodel_query(text: str) -> str:
    """`nvpmodel -q` prints "NV Power Mode: <name>" then the mode id (and maybe NVPM WARN lines)."""
    match = _NV_POWER_MODE.search(text)
    return match.group(1) if match else ""


def collect_nvpmodel_mode(root: str = "/", runner: CommandRunner = run_command) -> str:
    return parse_nvpmodel_query(_run_tool("nvpmodel", ["-q"], root, runner))


def _all_pinned(pairs: list[tuple[str, str]]) -> bool:
    return all(low == high for low, high in pairs)


def parse_jetson_clocks_show(text: str) -> str:
    """"on" when jetson_clocks pinned every online CPU and the GPU at max (min == max), else "off"."""
    # Some nvpmodel modes pin the CPUs by themselves (Nano 5W: min = max = 921600), so the GPU
    # range and the EMC override, which only jetson_clocks sets, decide.
    cpus = [(low, high) for online, low, high in _CLOCKS_CPU.findall(text) if online == "1"]
    gpus = _CLOCKS_GPU.findall(text)
    if not cpus and not gpus:
        return ""
    emc_override = _CLOCKS_EMC_OVERRIDE.search(text)
    emc_pinned = emc_override is None or emc_override.group(1) == "1"
    return "on" if _all_pinned(cpus) and _all_pinned(gpus) and emc_pinned else "off"


def collect_jetson_clocks(root: str = "/", runner: CommandRunner = run_command) -> str:
    return parse_jetson_clocks_show(_run_tool("jetson_clocks", ["--show"], root, runner))


def collect_temperatures(root: str = "/") -> dict[str, float]:
    return read_temperatures(root)


def collect_pi_throttle(root: str = "/", runner: CommandRunner = run_command) -> tuple[bool, list[str]]:
    """(throttled now, flag names) from `vcgencmd get_throttled`; (False, []) off a Pi."""
    state = read_throttle_state(root, runner)
    if state is None:
        return False, []
    return state.active_now, list(state.flags)


def collect_cpu_throttle_counts(root: str = "/") -> dict[str, int]:
    """Counter name -> events since boot, for the counters Linux exposes (x86 only)."""
    # core_* counters are per CPU, so they are summed; package_* counters repeat the package's
    # count on every CPU of it, so the largest is kept. Either way they only grow, so an increase
    # between two fingerprints means the run throttled.
    counts: dict[str, int] = {}
    for path in sorted(glob.glob(os.path.join(root, THROTTLE_COUNTS))):
        name = os.path.basename(path)
        value = _read_int_or_zero(path)
        if name.startswith("core_"):
            counts[name] = counts.get(name, 0) + value
        else:
            counts[name] = max(counts.get(name, 0), value)
    return counts


def collect_fingerprint(root: str = "/", runner: CommandRunner = run_command) -> EnvironmentFingerprint:
    throttled, flags = collect_pi_throttle(root, runner)
    counters = collect_cpu_throttle_counts(root)
    return EnvironmentFingerprint(
        cpu_governor=collect_cpu_governor(root),
        cpu_cur_freq_khz=collect_cpu_cur_freq_khz(root),
        cpu_max_freq_khz=collect_cpu_max_freq_khz(root),
        nvpmodel_mode=collect_nvpmodel_mode(root, runner),
        jetson_clocks=collect_jetson_clocks(root, runner),
        temps_c=collect_temperatures(root),
        throttled=throttled,
        throttle_flags=flags + [f"{name}={value}" for name, value in sorted(counters.items()) if value],
    )


def _counter_values(fingerprint: EnvironmentFingerprint) -> dict[str, int]:
    values = {}
    for flag in fingerprint.throttle_flags:
        match = _COUNTER_FLAG.match(flag)
        if match is not None:
            values[match.group(1)] = int(match.group(2))
    return values


def throttled_between(start: EnvironmentFingerprint, end: EnvironmentFingerprint) -> bool:
    """Did the board throttle between two fingerprints taken around a run?"""
    if start.throttled or end.throttled:
        return True
    before, after = _counter_values(start), _counter_values(end)
    if any(value > before.get(name, 0) for name, value in after.items()):
        return True
    # A Pi "*_occurred" flag that was not set before the run appeared during it.
    pi_flags_after = {flag for flag in end.throttle_flags if "=" not in flag}
    return bool(pi_flags_after - set(start.throttle_flags))
