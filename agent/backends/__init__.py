"""Runtime backends, chosen by the name used in devices.yaml.

The registry is an explicit table (not import side effects), so a name is never
"unknown" because some module was not imported; a test checks every module in
this folder is listed.
"""
from __future__ import annotations

import importlib

from edgefarm.agent.backends.base import BackendModule

REGISTRY: dict[str, str] = {
    "executorch": "edgefarm.agent.backends.executorch",
    "litert": "edgefarm.agent.backends.litert",
    "onnxruntime": "edgefarm.agent.backends.onnxruntime",
    "openvino": "edgefarm.agent.backends.openvino",
    "simulated": "edgefarm.agent.backends.simulated",  # scheduler and scale tests only: it sleeps
    "tensorrt": "edgefarm.agent.backends.tensorrt",
}


class UnknownBackendError(ValueError):
    pass


def backend_names() -> list[str]:
    return sorted(REGISTRY)


def get_backend(name: str) -> BackendModule:
    """Import the backend module for `name`; ImportError means its runtime is not installed."""
    if name not in REGISTRY:
        raise UnknownBackendError(
            f"unknown backend {name!r}; valid backends: {', '.join(backend_names())}")
    return importlib.import_module(REGISTRY[name])  # type: ignore[return-value]
