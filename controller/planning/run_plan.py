"""What a run is asked to do, as plain typed data: the model, recipes, target board and measuring
policy, and the job spec a board receives. Pure: config loading and the CLI import it freely."""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgefarm.controller.agents.records import JobSpec
from edgefarm.controller.config.inventory import BackendSettings
from edgefarm.controller.planning.input_plan import ShapeList
from edgefarm.controller.planning.job_inputs import JobInputs
from edgefarm.controller.results.store import JobRecord

if TYPE_CHECKING:  # compressors (torch, onnx) stay out of plain planning imports
    from edgefarm.compressors.models import ModelBundle


@dataclass(frozen=True)
class Target:
    name: str
    address: str | None            # None: start the embedded local agent
    # The embedded agent's: what it cannot run here its Describe says, and such jobs are refused before upload.
    backends: tuple[str, ...] = ("onnxruntime", "litert", "openvino", "executorch")
    settings: Mapping[str, BackendSettings] = field(default_factory=dict)  # from devices.yaml
    security: str = ""             # devices.yaml's tls | token | plaintext ("" = by host)

@dataclass(frozen=True)
class MeasureSettings:
    """How each job measures (edgefarm.Measure in the Python API): warm-up until both a count and a
    time are met, then measuring until both a minimum count and a minimum duration are met, capped.

    Example:
        >>> edgefarm.Measure(warmup_seconds=0.05, min_seconds=0.2)   # a quick look; the default is >= 3 s
    """

    warmup_iterations: int = 10
    warmup_seconds: float = 0.5
    min_iterations: int = 10
    min_seconds: float = 3.0
    max_iterations: int = 100_000
    max_seconds: float = 60.0
    timeout_seconds: float = 600.0
    batch_size: int | None = None     # None: 1, or what the input shapes imply
    streams: int = 1                  # throughput mode: concurrent streams on the board
    profile: bool = False             # a separate per-layer profiling pass after the headline measurement

@dataclass(frozen=True)
class RunPlan:
    model: str                      # registry name, or a path to an .onnx file or a prebuilt one (PREBUILT_FORMATS)
    recipes: tuple[str, ...]
    target: Target
    cache_dir: Path
    measure: MeasureSettings = MeasureSettings()
    calib_npz: Path | None = None   # for a user's model: int8-static calibration data
    eval_npz: Path | None = None    # for a user's model: inputs `x` + labels `y` for accuracy
    shapes: ShapeList = ()          # --shape: the exact shape of inputs with dynamic dims
    inputs_npz: Path | None = None  # --inputs: the user's own tensors, used instead of synthetic data
    backend: str = ""               # pinned backend; "" = the board's preferred one for the artifact

@dataclass(frozen=True)
class ModelSource:
    """The model a run starts from: the fp32 ONNX model that recipes compress (bundle), or a prebuilt
    .tflite that runs as is (bundle None), with the data that goes with it."""

    path: Path
    bundle: ModelBundle | None
    eval_npz: Path | None
    calib_npz: Path | None

@dataclass
class PhaseTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

@dataclass(frozen=True)
class JobFailure:
    """A job that did not measure: its variant, the device, the failure kind and the agent's message.

    Example:
        >>> [f"{f.variant} on {f.device}: {f.kind}" for f in run.failures]
        ['int8-static on jetson-orin-01: backend-crash']
    """

    variant: str
    device: str
    kind: str
    message: str

@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    results: int
    failures: tuple[JobFailure, ...]
    bytes_uploaded: int

AS_IS = "as-is"   # a prebuilt artifact (e.g. a .tflite) measured without a recipe
# Model files that go to the board as they are, and the format each ships as: an OpenVINO IR's .xml
# travels with its .bin as one .ovir bundle (agent/backends/openvino.py).
PREBUILT_FORMATS = {".tflite": ".tflite", ".pte": ".pte", ".ovir": ".ovir", ".xml": ".ovir"}


def prebuilt_format(model: str) -> str | None:
    """The format a prebuilt model file ships as; None for a model the recipes compress (ONNX, a name)."""
    return PREBUILT_FORMATS.get(Path(model).suffix.lower())


class PlanError(ValueError):
    """A run that cannot be planned as asked (e.g. recipes on a prebuilt .tflite)."""

def model_name(model: str) -> str:
    """What results call a model: its registry name, or a file's stem (as its bundle does)."""
    return Path(model).stem if Path(model).suffix else model

def build_spec(job: JobRecord, measure: MeasureSettings, choice: BackendSettings, eval_sha: str,
               inputs: JobInputs | None = None) -> JobSpec:
    """The job as the board receives it: measuring policy, the backend's settings from devices.yaml,
    and the exact input shapes and data of its model."""
    m, plan = measure, inputs.plan if inputs is not None else None
    return JobSpec(
        job_id=job.id, artifact_sha256=job.artifact_sha256, backend=job.backend, threads=choice.threads,
        execution_provider=choice.execution_provider, delegate=choice.delegate, precision=choice.precision,
        batch_size=plan.batch_size if plan is not None else (m.batch_size or 1),
        warmup_iterations=m.warmup_iterations, warmup_seconds=m.warmup_seconds, min_iterations=m.min_iterations,
        min_seconds=m.min_seconds, max_iterations=m.max_iterations, max_seconds=m.max_seconds,
        timeout_seconds=m.timeout_seconds, eval_artifact_sha256=eval_sha, seed=0, streams=m.streams,
        dla_core=choice.dla_core, input_shapes=tuple(plan.shapes) if plan is not None else (),
        inputs_artifact_sha256=inputs.inputs_sha if plan is not None else "",
        fidelity_artifact_sha256=inputs.fidelity.sha256 if plan is not None and inputs.fidelity else "",
        profile=m.profile, benchmark_model_path=choice.benchmark_model if m.profile else "",
        device=choice.device, performance_hint=choice.performance_hint)
