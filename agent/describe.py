"""What this device is: small collect_* probes, each tolerant of a missing file."""
from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from edgefarm.agent import PROTOCOL_VERSION, __version__
from edgefarm.agent.backends import backend_names, get_backend
from edgefarm.agent.sensors import available_sensors
from edgefarm.protos import agent_pb2 as pb


def describe() -> pb.DeviceInfo:
    return pb.DeviceInfo(
        hostname=socket.gethostname(), machine=platform.machine(), cpu_model=collect_cpu_model(),
        cpu_cores=os.cpu_count() or 0, ram_bytes=collect_ram_bytes(), os=collect_os(),
        python_version=platform.python_version(), runtimes=collect_runtimes(),
        accelerators=collect_accelerators(), sensors=available_sensors(),
        agent_version=__version__, protocol_version=PROTOCOL_VERSION, missing_runtimes=collect_missing_runtimes())


def collect_cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    # x86 says "model name"; Raspberry Pi and Jetson kernels say "Model" or nothing per core.
    for line in _read(cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def collect_ram_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in _read(meminfo).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def collect_os(os_release: Path = Path("/etc/os-release")) -> str:
    for line in _read(os_release).splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return f"{platform.system()} {platform.release()}"


def collect_runtimes() -> list[pb.RuntimeInfo]:
    runtimes = []
    for name in backend_names():
        try:
            module = get_backend(name)
            version = module.version()
        except ImportError:
            continue
        if version:
            runtimes.append(pb.RuntimeInfo(name=name, version=version, providers=module.providers()))
    return runtimes


def collect_missing_runtimes() -> list[pb.MissingRuntime]:
    """The backends this agent knows that cannot run here, each with why: the controller refuses their
    jobs before uploading anything, with this reason."""
    present = {runtime.name for runtime in collect_runtimes()}
    return [pb.MissingRuntime(name=name, reason=_missing_reason(name))
            for name in backend_names() if name not in present and name != "simulated"]


def _missing_reason(name: str) -> str:
    module = get_backend(name)
    # Backends whose absence has more than one cause (Python version, a missing torch) explain it themselves.
    explain = getattr(module, "missing_reason", None)
    return explain() if explain is not None else f"not installed: pip install 'edgefarm[{name}]'"


def collect_accelerators(root: Path = Path("/")) -> list[str]:
    found = []
    if (root / "etc/nv_tegra_release").exists():
        found.append("jetson-gpu")
    if (root / "dev/nvidia0").exists():
        found.append("nvidia-gpu")
    if (root / "dev/apex_0").exists():  # Coral M.2/PCIe; the USB Coral shows only through libedgetpu
        found.append("edgetpu-pcie")
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
