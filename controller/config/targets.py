"""Which agent a run talks to: a device from devices.yaml, or the embedded local agent."""
from __future__ import annotations

from pathlib import Path

from edgefarm.controller.config.inventory import load_inventory
from edgefarm.controller.planning.run_plan import Target

DEFAULT_DEVICES_FILE = Path("devices.yaml")


def resolve_target(device: str | None, devices_file: Path | None) -> Target:
    """No device named: the embedded default (a local agent subprocess on loopback)."""
    if device is None:
        return Target("local", None)
    found = load_inventory(devices_file or DEFAULT_DEVICES_FILE).get(device)
    return Target(found.name, found.address, found.backends, dict(found.backend_options), found.security)
