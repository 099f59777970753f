"""Per-layer profiling passes, one module per runtime, chosen by the backend's registry name.

A pass runs after the headline measurement, in its own session or interpreter where the runtime
allows, with a capped number of iterations; the headline latency is never measured with a profiler
on (as trtexec's --separateProfileRun). Each module exposes
`profile(engine, artifact_path, options, feeds, settings) -> LayerProfile`.
"""
from __future__ import annotations

import importlib
import logging

import numpy as np

from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.profiling.records import LayerProfile, LayerRow, ProfileFormatError
from edgefarm.agent.profiling.settings import ProfileSettings

__all__ = ["PROFILERS", "LayerProfile", "LayerRow", "ProfileFormatError", "ProfileSettings", "run_profile"]
log = logging.getLogger(__name__)

PROFILERS: dict[str, str] = {
    "executorch": "edgefarm.agent.profiling.executorch",
    "litert": "edgefarm.agent.profiling.litert",
    "onnxruntime": "edgefarm.agent.profiling.onnxruntime",
    "openvino": "edgefarm.agent.profiling.openvino",
    "tensorrt": "edgefarm.agent.profiling.tensorrt",
}


def run_profile(backend: str, engine: object, artifact_path: str, options: BackendOptions,
                feeds: dict[str, np.ndarray], settings: ProfileSettings) -> LayerProfile:
    """The backend's per-layer table; "not available: why" when it has no profiler or the profiler fails.

    A profile file the runtime wrote but that cannot be read raises ProfileFormatError (infrastructure).
    """
    if backend not in PROFILERS:
        return LayerProfile.not_available(f"backend {backend!r} has no per-layer profiler "
                                          f"(profilers: {', '.join(sorted(PROFILERS))})")
    module = importlib.import_module(PROFILERS[backend])
    try:
        return module.profile(engine, artifact_path, options, feeds, settings)
    except ProfileFormatError:
        raise
    except Exception as exc:  # the runtime's profiler failed; the headline result still stands
        log.warning("profiling pass of %s failed: %s", backend, exc)
        return LayerProfile.not_available(f"the {backend} profiler failed: {type(exc).__name__}: "
                                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
