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
    dim_names: Sequence[str] = ()  # symbolic names of dynamic dims where the model has them ("batch")


@dataclass(frozen=True)
class BackendOptions:
    threads: int = 0            # 0 = the runtime's default
    execution_provider: str = ""
    delegate: str = ""
    precision: str = ""
    batch_size: int = 1
    engine_cache_dir: str = ""  # where built engines are kept between jobs; "" = build every time
    # TensorRT build settings (ONNX Runtime's TensorRT EP takes dla_core too).
    dla_core: int = -1          # -1 = the GPU; 0/1 = that DLA core, with GPU fallback
    sparsity: bool = False      # let TensorRT pick 2:4 structured-sparse kernels (SPARSE_WEIGHTS)
    cuda_graph: bool = False    # capture the enqueue once as a CUDA graph and replay it
    calibration_path: str = ""  # .npz with an `x` array: INT8 entropy calibration for a non-QDQ model
    # OpenVINO: the device plugin (CPU, GPU, NPU; "" = CPU) and its performance hint (latency, throughput).
    device: str = ""
    performance_hint: str = ""
    # The exact shape of every input the job runs at (name, dims), every dynamic dim resolved by the
    # controller. Empty: the model's own static shapes, a dynamic leading dim taking batch_size.
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def shape_of(self, name: str) -> tuple[int, ...] | None:
        """The shape this job runs input `name` at, or None when the job does not say."""
        return dict(self.input_shapes).get(name)


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
    # What loading built. Backends that build nothing (LiteRT) may leave both out: the job then
    # reports 0 and False.
    build_ms: float             # engine build / graph optimization time; 0 when nothing was built
    cache_hit: bool             # the engine came from the agent's engine cache

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
