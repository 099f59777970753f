"""The one small interface every runtime backend implements."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


class BadInputError(Exception):
    """The artifact or its inputs are wrong for this backend (not a runtime fault)."""


class BackendUnavailableError(Exception):
    """The runtime, delegate or accelerator this job needs is not on this board."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Sequence[int]        # -1 marks a dynamic dimension
    dtype: str                  # numpy dtype name, e.g. "float32", "int8"


@dataclass(frozen=True)
class BackendOptions:
    threads: int = 0            # 0 = the runtime's default
    execution_provider: str = ""
    delegate: str = ""
    precision: str = ""
    batch_size: int = 1


@dataclass(frozen=True)
class Timing:
    """One iteration's host time and, where the runtime can tell, its compute-only time."""
    host_ns: int
    compute_ns: int | None = None


class Engine(Protocol):
    """A loaded model, ready to run on host numpy arrays."""

    inputs: list[TensorSpec]
    provider: str               # what really runs (e.g. the EP ONNX Runtime chose)
    compute_separable: bool     # True when run_timed() returns compute_ns

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def run_timed(self, feeds: dict[str, np.ndarray]) -> Timing:
        """Only called when compute_separable: host and compute-only time of one run."""
        ...

    def close(self) -> None: ...


class BackendModule(Protocol):
    """What each module in agent/backends/ exposes at top level."""

    NAME: str

    def version(self) -> str | None: ...

    def providers(self) -> list[str]: ...

    def load(self, path: str, options: BackendOptions) -> Engine: ...
