"""A simulated runtime, for scheduler and scale tests only: `run()` sleeps instead of computing.

Nothing it reports is a measurement of a model. Its results say so twice (backend "simulated",
provider "simulated (no real runtime)"), and `version()` is None so no agent lists it among its
runtimes in Describe. The controller's devices.yaml cannot name it either (the inventory knows
only real backends); tests and benchmarks build such devices in code.

The artifact is a small JSON file: {"simulated_latency_ms": 5.0}.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from edgefarm.agent.backends.base import BackendOptions, BadInputError, TensorSpec

NAME = "simulated"
PROVIDER = "simulated (no real runtime)"
LATENCY_KEY = "simulated_latency_ms"
MAX_ARTIFACT_BYTES = 4096
MAX_LATENCY_MS = 10_000.0  # a typo (5000 for 5.0) fails the job instead of stalling a board
_EXAMPLE = '{"simulated_latency_ms": 5.0}'


def version() -> str | None:
    return None  # not a runtime: Describe lists only what a board really has


def providers() -> list[str]:
    return [PROVIDER]


class SimulatedEngine:
    compute_separable = False
    build_ms = 0.0
    cache_hit = False

    def __init__(self, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self.inputs = [TensorSpec("input", (1,), "float32")]
        self.provider = PROVIDER
        self._output = np.zeros(1, dtype=np.float32)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        time.sleep(self.latency_ms / 1000.0)
        return [self._output]

    def run_timed(self, feeds: dict[str, np.ndarray]):  # pragma: no cover - not separable
        raise NotImplementedError("the simulated backend has no compute-only time")

    def close(self) -> None:
        pass


def load(path: str, options: BackendOptions) -> SimulatedEngine:
    return SimulatedEngine(read_latency_ms(path))


def read_latency_ms(path: str) -> float:
    """The latency a simulated artifact asks for; BadInputError for anything else."""
    try:
        with open(path, "rb") as f:
            document = json.loads(f.read(MAX_ARTIFACT_BYTES + 1).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"not a simulated-backend artifact (expected JSON like {_EXAMPLE}): {exc}") from exc
    value = document.get(LATENCY_KEY) if isinstance(document, dict) else None
    # bool is an int subclass: `true` is not a latency
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(f"a simulated-backend artifact needs a number {LATENCY_KEY!r}, e.g. {_EXAMPLE}")
    if not 0 <= value <= MAX_LATENCY_MS:
        raise BadInputError(f"{LATENCY_KEY} must be between 0 and {MAX_LATENCY_MS:g} ms, got {value}")
    return float(value)


def write_artifact(path: Path, latency_ms: float) -> Path:
    """A simulated artifact, for tests and benchmarks that need one."""
    Path(path).write_text(json.dumps({LATENCY_KEY: latency_ms}) + "\n")
    return Path(path)
