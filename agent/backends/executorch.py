"""ExecuTorch backend: a .pte program, its XNNPACK partitions delegated, the rest on the CPU kernels.

Two Python runtimes run a .pte; the first found wins:
  executorch                the full wheel (Python >= 3.10). Its runtime imports torch, so the board
                            needs a CPU torch beside it. Sets the XNNPACK thread count; writes ETDump
                            for the per-op profile.
  executorch-numpy-runtime  torch-free, numpy only (Python >= 3.12, runs programs of ExecuTorch 1.3+).
                            The light choice for a Raspberry Pi; it cannot set threads or write ETDump.
Python 3.8/3.9 has neither: Describe says so and the controller refuses the job before uploading.

Delegation is decided when the program is exported (compressors/executorch_export.py), not here: the
engine reads the program's placement (agent/pte_program.py) and reports it as the provider, e.g.
"xnnpack (2 partitions) + cpu kernels (aten::cumsum.out)". A program XNNPACK took nothing of runs on
the CPU kernels alone; that is a placement, not a failure.

A .pte keeps no input names: inputs are named "input" (one input, the name our ONNX models use) or
input_0, input_1, ... in the program's order.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import numpy as np

from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, TensorSpec, Timing
from edgefarm.agent.pte_program import Method, NotAProgramError, read_methods

NAME = "executorch"
FULL, NUMPY = "executorch", "executorch-numpy-runtime"
METHOD = "forward"
_CONVERTED_CAP = 64
# c10::ScalarType codes -> numpy dtype names (executorch/schema/scalar_type.fbs)
_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
           7: "float64", 11: "bool"}


class _Runtime(NamedTuple):
    package: str
    version: str
    load_program: Callable[..., Any]   # (path, etdump) -> a program with load_method(name)
    threads: Callable[[int], None] | None   # None: this runtime cannot set XNNPACK's thread pool
    to_runtime: Callable[[np.ndarray], Any]    # a host array as the runtime takes it
    to_host: Callable[[Any], np.ndarray]


def _full() -> _Runtime:
    import torch  # executorch's runtime is built on torch's tensors; without torch it cannot import
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    runtime = Runtime.get()

    def load_program(path: str, etdump: bool = False) -> Any:
        return runtime.load_program(path, enable_etdump=etdump, debug_buffer_size=0)

    return _Runtime(FULL, _distribution_version(FULL), load_program, portable_lib._unsafe_reset_threadpool,
                    torch.from_numpy, lambda tensor: tensor.numpy())


def _numpy_runtime() -> _Runtime:
    import executorch_numpy_runtime as runtime

    def load_program(path: str, etdump: bool = False) -> Any:
        return runtime.Runtime.get().load_program(path)

    version = f"{runtime.__version__} (ExecuTorch {runtime.__et_version__})"
    return _Runtime(NUMPY, version, load_program, None, np.ascontiguousarray, np.asarray)


def _distribution_version(package: str) -> str:
    from importlib.metadata import version as distribution_version

    return distribution_version(package)


@lru_cache(maxsize=None)
def _runtime() -> _Runtime | None:
    for make in (_full, _numpy_runtime):
        try:
            return make()
        except ImportError:
            continue
    return None


def _installed() -> str | None:
    """Which runtime a job would load, found without importing it: the full runtime imports torch
    (seconds and ~400 MB), which the agent's long-lived server must not pay for Describe."""
    if importlib.util.find_spec("executorch") is not None and importlib.util.find_spec("torch") is not None:
        return FULL
    return NUMPY if importlib.util.find_spec("executorch_numpy_runtime") is not None else None


def missing_reason() -> str:
    """Why this board has no ExecuTorch runtime, and what to install: Describe reports it."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.version_info < (3, 10):
        return (f"no ExecuTorch Python runtime exists for Python {here}: executorch needs >= 3.10 (and torch), "
                "executorch-numpy-runtime >= 3.12")
    if importlib.util.find_spec("executorch") is not None:
        return "executorch is installed but torch is not, which its runtime imports: install a CPU build of torch"
    return "install edgefarm[executorch] (executorch-numpy-runtime on Python >= 3.12, else executorch and torch)"


def _require_runtime() -> _Runtime:
    runtime = _runtime()
    if runtime is None:
        raise BackendUnavailableError(f"no ExecuTorch runtime on this board: {missing_reason()}")
    return runtime


def version() -> str | None:
    """e.g. "executorch 1.5.1"; None when no ExecuTorch runtime is installed here."""
    package = _installed()
    if package == FULL:
        return f"{FULL} {_distribution_version(FULL)}"
    runtime = _runtime() if package == NUMPY else None   # a light import: numpy and one extension
    return None if runtime is None else f"{runtime.package} {runtime.version}"


def providers() -> list[str]:
    """The delegates the torch-free runtime links in (XnnpackBackend, ...). Not listed for the full wheel:
    asking it imports torch into the agent's server; a job's provider names what really ran."""
    if _installed() != NUMPY:
        return []
    import executorch_numpy_runtime

    return sorted(executorch_numpy_runtime.runtime_info()["backends"])


def load(path: str, options: BackendOptions, etdump: bool = False) -> ExecuTorchEngine:
    """Load the program's forward method; `etdump` (full runtime only) records per-op events."""
    runtime = _require_runtime()
    method_plan = program_placement(path)
    _check_options(runtime, options)
    if options.threads > 0 and runtime.threads is not None:
        runtime.threads(options.threads)  # process-wide: the worker runs one job
    start = time.perf_counter_ns()
    try:
        program = runtime.load_program(path, etdump)
        method = program.load_method(METHOD)
    except Exception as exc:  # both runtimes raise RuntimeError or their own error types for a bad program
        raise BadInputError(f"{runtime.package} cannot load the program: {_first_line(exc)} (a .pte exported by "
                            f"a newer ExecuTorch than this runtime, {runtime.version}, also fails here)") from exc
    load_ms = (time.perf_counter_ns() - start) / 1e6
    return ExecuTorchEngine(runtime, program, method, method_plan, load_ms)


def program_placement(path: str) -> Method:
    """The forward method's placement; a file that is no ExecuTorch program is refused in one line."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        methods = read_methods(data)
    except NotAProgramError as exc:
        raise BadInputError(f"{path} is not an ExecuTorch program (.pte): {exc}; export one with the "
                            "et-fp32 or et-int8 recipe") from exc
    found = [method for method in methods if method.name == METHOD]
    if not found:
        raise BadInputError(f"the ExecuTorch program has no '{METHOD}' method "
                            f"(it has {', '.join(m.name for m in methods) or 'none'})")
    return found[0]


def _check_options(runtime: _Runtime, options: BackendOptions) -> None:
    others = [name for name, is_set in (("execution_provider", options.execution_provider),
                                        ("delegate", options.delegate), ("precision", options.precision),
                                        ("device", options.device), ("performance_hint", options.performance_hint),
                                        ("dla_core", options.dla_core >= 0)) if is_set]
    if others:
        raise BadInputError(f"{', '.join(others)}: not settings of the 'executorch' backend (it takes threads; "
                            "delegation and precision are fixed when the program is exported)")
    if options.threads < 0:
        raise BadInputError(f"threads must be >= 0 (0 = the runtime's default), got {options.threads}")
    if options.threads > 0 and runtime.threads is None:
        raise BadInputError(f"{runtime.package} cannot set the thread count (XNNPACK sizes its own pool); "
                            "leave threads out for this board, or install the full executorch wheel")


def provider_text(method: Method) -> str:
    """The placement in one phrase: xnnpack partitions and the ops left to the CPU kernels."""
    parts = []
    if method.delegated:
        backends = sorted({step.name.replace("Backend", "").lower() for step in method.delegated})
        count = len(method.delegated)
        parts.append(f"{'+'.join(backends)} ({count} partition{'s' if count != 1 else ''})")
    if method.kernels:
        ops = sorted({step.name for step in method.kernels})
        parts.append(f"cpu kernels ({', '.join(ops)})")
    return " + ".join(parts) or "cpu kernels"


class ExecuTorchEngine:
    """A loaded forward method; inputs and outputs are host numpy arrays."""

    compute_separable = False   # execute() is host-to-host: the runtime gives no compute-only time
    cache_hit = False

    def __init__(self, runtime: _Runtime, program: Any, method: Any, placement: Method, load_ms: float) -> None:
        self.runtime, self.program, self.placement = runtime, program, placement
        self._method = method
        self._execute = method.execute if runtime.package == FULL else method  # bound once for the timed loop
        self._to_runtime, self._to_host = runtime.to_runtime, runtime.to_host
        self.inputs = _input_specs(method.metadata, runtime.package)
        self.provider = provider_text(placement)
        self.build_ms = load_ms     # the program is ahead-of-time compiled; loading inits the XNNPACK graphs
        # The runtime's value for each input array, by id (each array kept alive here so its id stays its own).
        # torch.from_numpy shares the array's memory, so a value stays current; but a new tensor object per
        # call costs the full runtime ~5 us more per execute() (its input setup), which an application that
        # keeps its input buffer does not pay, and which the measured loop would wrongly charge to the model.
        self._converted: dict[int, tuple[np.ndarray, Any]] = {}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = [self._value(feeds[spec.name]) for spec in self.inputs]
        to_host = self._to_host
        return [to_host(output) for output in self._execute(values)]

    def _value(self, array: np.ndarray) -> Any:
        held = self._converted.get(id(array))
        if held is None or held[0] is not array:
            if len(self._converted) >= _CONVERTED_CAP:  # scoring and fidelity feed many arrays once each
                self._converted.clear()
            held = (array, self._to_runtime(array))
            self._converted[id(array)] = held
        return held[1]

    def run_timed(self, feeds: dict[str, np.ndarray]) -> Timing:  # pragma: no cover - not separable
        raise NotImplementedError("ExecuTorch's execute() gives no compute-only time")

    def close(self) -> None:
        self._execute = None
        self._method = None
        self.program = None
        self._converted.clear()


def _input_specs(metadata: Any, package: str) -> list[TensorSpec]:
    if package == FULL:
        shapes = [(list(metadata.input_tensor_meta(i).sizes()), int(metadata.input_tensor_meta(i).dtype()))
                  for i in range(metadata.num_inputs())]
    else:
        shapes = [(list(meta["shape"]), int(meta["scalar_type"])) for meta in metadata["inputs"]]
    names = ["input"] if len(shapes) == 1 else [f"input_{index}" for index in range(len(shapes))]
    return [TensorSpec(name, [int(d) for d in dims], _DTYPES.get(code, "float32"))
            for name, (dims, code) in zip(names, shapes)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
