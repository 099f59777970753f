"""One run on one device: model → variants → upload → measure → store.

Each phase is timed (train / compress / upload / measure) so `make bench` can
show where a run's wall time goes.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from compressors.models import ModelBundle, bundle_from_file, get_model
from compressors.recipes import Variant, compress
from controller.client import AgentClient, sha256_file
from controller.console import RunConsole
from controller.fidelity import build_fidelity_set, host_fidelity
from controller.fidelity import summary as fidelity_summary
from controller.input_plan import InputPlan, ShapeList, declared_inputs, plan_inputs
from controller.inventory import BackendSettings
from controller.job_inputs import JobInputs, require_protocol
from controller.local_agent import LocalAgent
from controller.store import JobRecord, ResultStore, VariantRecord
from protos import agent_pb2 as pb

BACKEND_BY_SUFFIX = {".onnx": "onnxruntime", ".tflite": "litert"}


@dataclass(frozen=True)
class Target:
    name: str
    address: str | None            # None: start the embedded local agent
    backends: tuple[str, ...] = ("onnxruntime", "litert")
    settings: Mapping[str, BackendSettings] = field(default_factory=dict)  # from devices.yaml


@dataclass(frozen=True)
class MeasureSettings:
    warmup_iterations: int = 10
    warmup_seconds: float = 0.5
    min_iterations: int = 10
    min_seconds: float = 3.0
    max_iterations: int = 100_000
    max_seconds: float = 60.0
    timeout_seconds: float = 600.0
    batch_size: int | None = None     # None: 1, or what the input shapes imply
    streams: int = 1                  # throughput mode: concurrent streams on the board


@dataclass(frozen=True)
class RunPlan:
    model: str                      # registry name, or a path to an .onnx or .tflite file
    recipes: tuple[str, ...]
    target: Target
    cache_dir: Path
    measure: MeasureSettings = MeasureSettings()
    calib_npz: Path | None = None   # for a user's model: int8-static calibration data
    eval_npz: Path | None = None    # for a user's model: inputs `x` + labels `y` for accuracy
    shapes: ShapeList = ()          # --shape: the exact shape of inputs with dynamic dims
    inputs_npz: Path | None = None  # --inputs: the user's own tensors, used instead of synthetic data


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


class PlanError(ValueError):
    """A run that cannot be planned as asked (e.g. recipes on a prebuilt .tflite)."""


def model_name(model: str) -> str:
    """What results call a model: its registry name, or a file's stem (as its bundle does)."""
    return Path(model).stem if Path(model).suffix else model


def resolve_model(plan: RunPlan, ui: RunConsole) -> ModelBundle:
    path = Path(plan.model)
    if path.suffix or path.exists():
        return bundle_from_file(path, plan.calib_npz, plan.eval_npz)
    return get_model(plan.model, plan.cache_dir, progress=ui.phase_bar(f"model {plan.model}"))


def prebuilt_variant(plan: RunPlan) -> Variant:
    """A .tflite goes to the board as it is: LiteRT conversion happens outside the ONNX recipes."""
    path = Path(plan.model)
    if not path.is_file():
        raise PlanError(f"model file {path} does not exist; check the path")
    if set(plan.recipes) - {AS_IS, "fp32"}:
        raise PlanError(f"{path.name} is a prebuilt .tflite: it runs as is, so recipes "
                        f"{', '.join(sorted(set(plan.recipes) - {AS_IS, 'fp32'}))} do not apply; drop --recipe")
    sha = sha256_file(path)
    return Variant(path.stem, AS_IS, {}, path, path.stat().st_size, sha, None, 0.0)


@contextmanager
def agent_for(target: Target, cache_dir: Path) -> Iterator[Callable[[], AgentClient]]:
    """Yields a function that returns the connected client. The embedded local agent starts
    booting at once, so its start-up overlaps whatever the caller does before asking for it."""
    local = LocalAgent(cache_dir / "local-agent").start() if target.address is None else None
    clients: list[AgentClient] = []

    def client() -> AgentClient:
        if not clients:
            address = local.wait_ready() if local is not None else target.address
            clients.append(AgentClient(target.name, address))
            clients[0].connect()
        return clients[0]
    try:
        yield client
    finally:
        for c in clients:
            c.close()
        if local is not None:
            local.stop()


class RunExecutor:
    def __init__(self, store: ResultStore, ui: RunConsole, times: PhaseTimes | None = None) -> None:
        self.store, self.ui = store, ui
        self.times = times or PhaseTimes()

    def execute(self, plan: RunPlan, run_id: str) -> RunOutcome:
        with agent_for(plan.target, plan.cache_dir) as connect:
            with self.times.phase("train"):
                source = model_source(plan, self.ui)
            inputs = job_inputs(plan, source)  # refuses unresolved shapes before anything is compressed
            with self.times.phase("compress"):
                variants = self._variants(plan, source, inputs, run_id)
            client = connect()
            require_protocol(client.name, client.device_info, inputs)
            with self.times.phase("upload"):
                sent, eval_sha = self._upload(client, variants, source.eval_npz, inputs)
            with self.times.phase("measure"):
                failures = [f for v in variants
                            if (f := self._benchmark(client, plan, v, eval_sha, inputs.for_artifact(v.path), run_id))]
        return RunOutcome(run_id, len(variants) - len(failures), tuple(failures), sent)

    def _variants(self, plan: RunPlan, source: ModelSource, inputs: JobInputs, run_id: str) -> list[Variant]:
        if source.bundle is None:
            variant = prebuilt_variant(plan)
            self._record(variant, run_id, {})
            return [variant]
        return [self._compress(source.bundle, recipe, plan, inputs, run_id) for recipe in plan.recipes]

    def _compress(self, bundle: ModelBundle, recipe: str, plan: RunPlan, inputs: JobInputs, run_id: str) -> Variant:
        variant = compress(bundle, recipe, plan.cache_dir, progress=self.ui.phase_bar(f"compress {recipe}"))
        self._record(variant, run_id, host_fidelity_stats(variant, inputs))
        return variant

    def _record(self, variant: Variant, run_id: str, fidelity: dict) -> None:
        self.store.add_variant(run_id, variant_record(variant, fidelity))

    def _upload(self, client: AgentClient, variants: list[Variant], eval_npz: Path | None,
                inputs: JobInputs) -> tuple[int, str]:
        files = [(v.path, v.sha256) for v in variants] + inputs.files()
        eval_sha = sha256_file(eval_npz) if eval_npz else ""
        if eval_sha:
            files.append((eval_npz, eval_sha))
        total = sum(p.stat().st_size for p, _ in files)
        bar, sent = self.ui.bar(f"upload to {client.name}", total=total), 0
        for path, sha in files:
            sent += client.ensure_uploaded(path, sha)
            bar(sent or total)
        bar(total)
        return sent, eval_sha

    def _benchmark(self, client: AgentClient, plan: RunPlan, variant: Variant, eval_sha: str, inputs: JobInputs,
                   run_id: str) -> JobFailure | None:
        backend = BACKEND_BY_SUFFIX.get(variant.path.suffix, "onnxruntime")
        job = JobRecord(uuid.uuid4().hex, run_id, variant.model, variant.recipe, plan.target.name,
                        backend, variant.sha256)
        self.store.add_job(job)
        spec = build_spec(job, plan, eval_sha, inputs)
        progress = self.ui.phase_bar(f"measure {variant.recipe} on {client.name}")
        for event in client.benchmark(spec):
            kind = event.WhichOneof("event")
            if kind == "progress":
                progress(event.progress.phase, event.progress.fraction)
            elif kind == "result":
                self.store.add_result(job, event.result)
                progress("done", 1.0)
                return None
            else:
                failure_kind = pb.Failure.Kind.Name(event.failure.kind).lower().replace("_", "-")
                self.store.add_failure(job, failure_kind, event.failure.message)
                return JobFailure(variant.recipe, plan.target.name, failure_kind, event.failure.message)
        self.store.add_failure(job, "infrastructure", "the agent closed the stream without a result")
        return JobFailure(variant.recipe, plan.target.name, "infrastructure", "stream ended without a result")


def model_source(plan: RunPlan, ui: RunConsole) -> ModelSource:
    if Path(plan.model).suffix == ".tflite":
        return ModelSource(Path(plan.model), None, plan.eval_npz, plan.calib_npz)
    bundle = resolve_model(plan, ui)
    return ModelSource(bundle.onnx_path, bundle, bundle.eval_npz, bundle.calib_npz)


def job_inputs(plan: RunPlan, source: ModelSource) -> JobInputs:
    """The run's input plan and fidelity set; InputPlanError when a shape or the data does not fit."""
    if source.bundle is None and not source.path.is_file():
        raise PlanError(f"model file {source.path} does not exist; check the path")
    declared = declared_inputs(source.path)
    if declared is None:  # a .tflite, and no LiteRT runtime here: the agent checks the shapes itself
        given = InputPlan(plan.shapes, plan.measure.batch_size or 1, plan.inputs_npz, pinned=bool(plan.shapes))
        return JobInputs(given if plan.shapes or plan.inputs_npz else None, source.path.suffix)
    input_plan = plan_inputs(declared, plan.shapes, plan.measure.batch_size, plan.inputs_npz, model_name(plan.model))
    fidelity = None
    if source.bundle is not None:  # an fp32 ONNX model to take reference outputs from
        data = (("inputs", input_plan.inputs_npz), ("evaluation data", source.eval_npz),
                ("calibration data", source.calib_npz))
        fidelity = build_fidelity_set(source.path, declared, input_plan, data, plan.cache_dir)
    return JobInputs(input_plan, source.path.suffix, fidelity)


def host_fidelity_stats(variant: Variant, inputs: JobInputs) -> dict:
    if inputs.fidelity is None:
        return {}
    return {**fidelity_summary(host_fidelity(variant.path, inputs.fidelity)), "fidelity_source": inputs.fidelity.source}


def variant_record(variant: Variant, fidelity: dict) -> VariantRecord:
    """What the store keeps of a variant; host fidelity goes with its stats."""
    return VariantRecord(variant.model, variant.recipe, dict(variant.params), variant.sha256, variant.size_bytes,
                         variant.accuracy, variant.duration_s, {**variant.stats, **fidelity},
                         [dict(step) for step in variant.steps])


def build_spec(job: JobRecord, plan: RunPlan, eval_sha: str, inputs: JobInputs | None = None) -> pb.BenchmarkSpec:
    m, choice = plan.measure, plan.target.settings.get(job.backend, BackendSettings(job.backend))
    spec = pb.BenchmarkSpec(
        job_id=job.id, artifact_sha256=job.artifact_sha256, backend=job.backend, threads=choice.threads,
        execution_provider=choice.execution_provider, delegate=choice.delegate, precision=choice.precision,
        batch_size=m.batch_size or 1, warmup=pb.WarmupPolicy(min_iterations=m.warmup_iterations,
                                                             min_seconds=m.warmup_seconds),
        measure=pb.MeasurePolicy(min_iterations=m.min_iterations, min_seconds=m.min_seconds,
                                 max_iterations=m.max_iterations, max_seconds=m.max_seconds),
        timeout_seconds=m.timeout_seconds, eval_artifact_sha256=eval_sha, seed=0, streams=m.streams,
        **({"dla_core": choice.dla_core} if choice.dla_core is not None else {}))
    if inputs is not None and inputs.plan is not None:
        spec.batch_size = inputs.plan.batch_size
        spec.input_shapes.extend(pb.InputShape(name=name, dims=list(dims)) for name, dims in inputs.plan.shapes)
        spec.inputs_artifact_sha256 = inputs.inputs_sha
        spec.fidelity_artifact_sha256 = inputs.fidelity.sha256 if inputs.fidelity else ""
    return spec
