"""The one rule for which backend runs an artifact on a board. Pure: the planner, the single-board
run, the farm runner, the canary and nightly keys all ask it, so they can never disagree."""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Protocol

SIMULATED = "simulated"
# Which backends run which artifact format, in order of preference. OpenVINO reads ONNX too, after the
# runtimes built for it: a board listing [onnxruntime, openvino] runs .onnx on ONNX Runtime unless a
# matrix or --backend openvino says otherwise.
RUNS_FORMAT: dict[str, tuple[str, ...]] = {
    ".onnx": ("onnxruntime", "tensorrt", "openvino"),
    ".tflite": ("litert",),
    ".pte": ("executorch",),
    ".ovir": ("openvino",),    # an OpenVINO IR, model.xml + model.bin as one tar (agent/backends/openvino.py)
    ".json": (SIMULATED,),   # agent/backends/simulated.py: scale tests only (devices.yaml cannot name it)
}


class NoBackendError(ValueError):
    """The board has no backend that runs this artifact (or not the one asked for)."""


def artifact_format(artifact: str | Path) -> str:
    return Path(artifact).suffix.lower()


def choose_backend(capabilities: Collection[str], artifact_format: str, requested: str | None = None) -> str:
    """The backend that runs a `artifact_format` file (".onnx") on a board with `capabilities`.

    `requested` pins it (a matrix or --backend choice) and is refused when the board lacks it or it
    cannot run the format; otherwise the first preferred backend the board has wins."""
    runners = RUNS_FORMAT.get(artifact_format, ())
    if requested:
        if requested not in runners:
            raise NoBackendError(f"backend {requested} does not run {artifact_format or 'this'} files "
                                 f"(it runs {_formats_of(requested)})")
        if requested not in capabilities:
            raise NoBackendError(f"the board has no {requested} (it has {_listed(capabilities)})")
        return requested
    for backend in runners:
        if backend in capabilities:
            return backend
    wanted = " or ".join(runners) or "no known backend"
    raise NoBackendError(f"{artifact_format or 'this'} files need {wanted}; the board has {_listed(capabilities)}")


class AgentRuntimes(Protocol):
    """What Describe says of a board's runtimes (a DeviceInfo record satisfies it)."""

    @property
    def backends(self) -> tuple[str, ...]: ...

    def missing_reason(self, backend: str) -> str: ...


def runtime_refusal(device: str, info: AgentRuntimes | None, backend: str) -> str:
    """Why the board's agent cannot run `backend` although devices.yaml lists it; "" when it can (or the
    agent did not say). Asked after Describe and before any upload, so nothing is shipped in vain."""
    if info is None or backend in info.backends or backend == SIMULATED:  # simulated is never listed: not a runtime
        return ""
    reason = info.missing_reason(backend)
    if not reason and not info.backends:
        return ""  # a Describe that lists no runtime at all says nothing either way
    reason = reason or "its agent does not list it"
    return (f"{device} has no {backend} runtime: {reason}; nothing was uploaded (the agent runs "
            f"{_listed(info.backends)})")


def can_run(capabilities: Collection[str], artifact_format: str, requested: str | None = None) -> bool:
    try:
        choose_backend(capabilities, artifact_format, requested)
    except NoBackendError:
        return False
    return True


def _formats_of(backend: str) -> str:
    return ", ".join(fmt for fmt, runners in RUNS_FORMAT.items() if backend in runners) or "nothing known"


def _listed(capabilities: Collection[str]) -> str:
    return ", ".join(sorted(capabilities)) or "no backend"
