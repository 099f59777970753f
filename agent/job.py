"""One benchmark job, run inside the worker child process: load, warm up, measure,
optional accuracy pass; emits protobuf events through a callback."""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np

from edgefarm.agent import __version__
from edgefarm.agent.backends import UnknownBackendError, get_backend
from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError, Engine
from edgefarm.agent.fidelity import compare_all, top1_hits
from edgefarm.agent.fingerprint import collect_fingerprint
from edgefarm.agent.inputs import Feeds, describe_inputs, load_feeds, load_fidelity_set, synthetic_feeds
from edgefarm.agent.measure import Measurement, MeasurePolicy, WarmupPolicy, measure, measure_streams, warm_up
from edgefarm.agent.pb import (
    failure_event,
    fidelity_to_pb,
    fingerprint_to_pb,
    layer_profile_to_pb,
    power_to_pb,
    progress_event,
    stats_to_pb,
)
from edgefarm.agent.profiling import ProfileFormatError, ProfileSettings, run_profile
from edgefarm.agent.sensors import probe
from edgefarm.agent.sensors.monitor import PowerMonitor, PowerSummary
from edgefarm.agent.shapes import Shape, run_shape
from edgefarm.protos import agent_pb2 as pb

Emit = Callable[[pb.BenchmarkEvent], None]
IDLE_BASELINE_SECONDS = 0.5
SYNTHETIC = "synthetic"   # Result.input_source when no input data was shipped


class Job:
    def __init__(self, spec: pb.BenchmarkSpec, artifact_path: str, eval_path: str | None, emit: Emit,
                 engine_cache_dir: str = "", inputs_path: str = "", fidelity_path: str = "") -> None:
        self.spec, self.artifact_path, self.eval_path, self.emit = spec, artifact_path, eval_path, emit
        self.inputs_path, self.fidelity_path = inputs_path, fidelity_path
        self.options = BackendOptions(threads=spec.threads, execution_provider=spec.execution_provider,
                                      delegate=spec.delegate, precision=spec.precision,
                                      batch_size=max(spec.batch_size, 1), engine_cache_dir=engine_cache_dir,
                                      dla_core=spec.dla_core if spec.HasField("dla_core") else -1,
                                      sparsity=spec.sparsity, cuda_graph=spec.cuda_graph,
                                      device=spec.device, performance_hint=spec.performance_hint,
                                      input_shapes=tuple((s.name, tuple(s.dims)) for s in spec.input_shapes))

    def run(self) -> None:
        try:
            self.emit(pb.BenchmarkEvent(result=self._run()))
        except (BadInputError, BackendUnavailableError, UnknownBackendError) as exc:
            self.emit(failure_event(pb.Failure.BAD_INPUT, str(exc)))
        except ProfileFormatError as exc:  # the board wrote a profile it cannot read: not the model's fault
            self.emit(failure_event(pb.Failure.INFRASTRUCTURE, str(exc)))
        except ImportError as exc:
            self.emit(failure_event(pb.Failure.BAD_INPUT,
                                    f"backend {self.spec.backend!r} is not installed on this agent: {exc}"))
        except Exception as exc:  # the runtime failed mid-run without killing the process
            self.emit(failure_event(pb.Failure.BACKEND_CRASH, f"{type(exc).__name__}: {_first_line(exc)}"))

    def _run(self) -> pb.Result:
        env_start = collect_fingerprint()
        with power_monitoring() as monitor:  # idle baseline first, before the model loads
            engine, load_ms = self._load()
            extra: list[Engine] = []
            try:
                shapes = self._run_shapes(engine)
                samples, source = self._samples(engine, shapes)
                first_ms = self._first_inference(engine, samples[0], source == SYNTHETIC, shapes)
                extra = self._stream_engines()
                result = self._measure([engine, *extra], samples, monitor)
                _record_inputs(result, engine, samples, source)
                self._accuracy(engine, result)
                self._fidelity(engine, result)
                self._profile(engine, samples[0], result)  # after the headline: never timed with it
            finally:
                for e in [engine, *extra]:
                    e.close()
        result.load_ms, result.first_inference_ms = load_ms, first_ms
        result.environment.CopyFrom(fingerprint_to_pb(env_start, collect_fingerprint(), __version__))
        result.environment.versions[self.spec.backend] = get_backend(self.spec.backend).version() or "unknown"
        result.peak_rss_bytes = _peak_rss_bytes()
        return result

    def _stream_engines(self) -> list[Engine]:
        """Throughput mode: one more engine per extra stream (interpreters are not thread-safe)."""
        backend = get_backend(self.spec.backend)
        return [backend.load(self.artifact_path, self.options) for _ in range(max(self.spec.streams, 1) - 1)]

    def _load(self):
        self.emit(progress_event("load", 0.0))
        backend = get_backend(self.spec.backend)
        start = time.perf_counter_ns()
        engine = backend.load(self.artifact_path, self.options)
        return engine, (time.perf_counter_ns() - start) / 1e6

    def _run_shapes(self, engine: Engine) -> dict[str, Shape]:
        """Every input's exact shape: the controller's, or a static model's own; never a guess."""
        names = [spec.name for spec in engine.inputs]
        unknown = [name for name, _ in self.options.input_shapes if name not in names]
        if unknown:
            raise BadInputError(f"the job gives a shape for {unknown[0]!r}, but the model's inputs are {names}")
        return {spec.name: run_shape(spec.name, spec.shape, self.options.batch_size,
                                     self.options.shape_of(spec.name), spec.dim_names) for spec in engine.inputs}

    def _samples(self, engine: Engine, shapes: dict[str, Shape]) -> tuple[list[Feeds], str]:
        """The user's input data when the job ships some, else synthetic data (and the result says so)."""
        if self.inputs_path:
            return load_feeds(self.inputs_path, engine.inputs, shapes), f"inputs:{self.spec.inputs_artifact_sha256}"
        return [synthetic_feeds(engine.inputs, shapes, self.spec.seed)], SYNTHETIC

    def _first_inference(self, engine: Engine, feeds: Feeds, synthetic: bool, shapes: dict[str, Shape]) -> float:
        """The cold tier's second half; a model that cannot run its inputs is bad input."""
        start = time.perf_counter_ns()
        try:
            engine.run(feeds)
        except Exception as exc:
            if synthetic:
                raise BadInputError(f"the model fails at {_shapes(feeds)} on synthetic inputs ({_first_line(exc)}); "
                                    f"check --shape, or give real values with --inputs FILE.npz holding "
                                    f"{describe_inputs(engine.inputs, shapes)}") from exc
            raise BadInputError(f"the model fails on the given input data at {_shapes(feeds)}: "
                                f"{_first_line(exc)}") from exc
        return (time.perf_counter_ns() - start) / 1e6

    def _measure(self, engines: list[Engine], samples: list[Feeds], monitor: PowerMonitor | None) -> pb.Result:
        self.emit(progress_event("warmup", 0.0))
        warmups = sum(warm_up(e, samples, _warmup_policy(self.spec.warmup)) for e in engines)
        if monitor is not None:
            monitor.start()
        report = lambda phase, frac: self.emit(progress_event(phase, frac))  # noqa: E731
        policy = _measure_policy(self.spec.measure)
        m = measure(engines[0], samples, policy, report) if len(engines) == 1 else \
            measure_streams(engines, samples, policy, report)
        power = None
        if monitor is not None:
            monitor.stop()
            power = monitor.summary(self.options.batch_size * len(m.samples_ns))  # energy per image
        return self._result(engines[0], m, warmups, power)

    def _result(self, engine: Engine, m: Measurement, warmups: int,
                power: PowerSummary | None) -> pb.Result:
        batch = self.options.batch_size
        r = pb.Result(job_id=self.spec.job_id, backend=self.spec.backend, provider=engine.provider,
                      samples_ns=m.samples_ns, latency=stats_to_pb(m.samples_ns),
                      compute_separable=engine.compute_separable, fps=batch * len(m.samples_ns) / m.wall_seconds,
                      measure_seconds=m.wall_seconds, warmup_iterations=warmups, batch_size=batch,
                      streams=max(self.spec.streams, 1), stopped_by=m.stopped_by,
                      # LiteRT builds nothing and leaves these out (see Engine in backends/base.py)
                      engine_build_ms=getattr(engine, "build_ms", 0.0),
                      engine_cache_hit=getattr(engine, "cache_hit", False))
        if m.compute_samples_ns:
            r.compute_samples_ns.extend(m.compute_samples_ns)
            r.compute_latency.CopyFrom(stats_to_pb(m.compute_samples_ns))
        r.power.CopyFrom(power_to_pb(power or PowerSummary.not_available(_NO_SENSOR)))
        return r

    def _accuracy(self, engine: Engine, result: pb.Result) -> None:
        if not self.eval_path or not _is_labelled(self.eval_path):
            return  # e.g. an encoder's eval set scores embedding fidelity on the controller only
        self.emit(progress_event("accuracy", 0.0))
        result.accuracy = top1_on_device(engine, self.eval_path)
        result.accuracy_available = True

    def _fidelity(self, engine: Engine, result: pb.Result) -> None:
        """The board's outputs on the shipped fidelity feeds against the fp32 model's, per output."""
        if not self.fidelity_path:
            return
        self.emit(progress_event("fidelity", 0.0))
        fidelity_set = load_fidelity_set(self.fidelity_path)
        try:
            outputs = [engine.run(feeds) for feeds in fidelity_set.feeds]
            found = compare_all(fidelity_set.output_names, _same_count(outputs, fidelity_set.output_names),
                                fidelity_set.references)
        except Exception as exc:  # a runtime error or a layout the reference does not share: say so, keep timing
            result.fidelity_unavailable_reason = f"the board could not compare its outputs: {_first_line(exc)}"
            return
        result.fidelity.extend(fidelity_to_pb(f) for f in found)

    def _profile(self, engine: Engine, feeds: Feeds, result: pb.Result) -> None:
        """The separate profiling pass (capped iterations), when the job asks for one."""
        if not self.spec.profile:
            return
        self.emit(progress_event("profile", 0.0))
        settings = ProfileSettings.from_spec(self.spec.profile_iterations, self.spec.benchmark_model_path)
        found = run_profile(self.spec.backend, engine, self.artifact_path, self.options, feeds, settings)
        result.layer_profile.CopyFrom(layer_profile_to_pb(found))


def _same_count(outputs: list[list[np.ndarray]], names: list[str]) -> list[list[np.ndarray]]:
    if outputs and len(outputs[0]) != len(names):
        raise ValueError(f"the model has {len(outputs[0])} outputs, the reference {len(names)} {names}")
    return outputs


def _record_inputs(result: pb.Result, engine: Engine, samples: list[Feeds], source: str) -> None:
    """The conditions of the measurement: the shapes every input ran at and where the data came from."""
    for spec in engine.inputs:
        result.input_shapes.add(name=spec.name, dims=list(samples[0][spec.name].shape))
    result.input_source, result.input_samples = source, len(samples)


_NO_SENSOR = "no power sensor on this board (RAPL, NVML, INA3221, tegrastats, Pi PMIC all absent)"


@contextmanager
def power_monitoring() -> Iterator[PowerMonitor | None]:
    """A monitor with its idle baseline taken, or None when the board has no power sensor."""
    sensor = probe()
    if sensor is None:
        yield None
        return
    try:
        monitor = PowerMonitor(sensor)
        monitor.measure_idle(IDLE_BASELINE_SECONDS)
        yield monitor
    finally:
        sensor.close()  # stops a tegrastats child, shuts NVML down


def _is_labelled(eval_path: str) -> bool:
    with np.load(eval_path, allow_pickle=False) as data:
        return {"x", "y"} <= set(data.files)


def top1_on_device(engine: Engine, eval_path: str) -> float:
    """Top-1 through the board's own engine; batches of the engine's batch size."""
    with np.load(eval_path, allow_pickle=False) as data:
        x, y = data["x"], data["y"]
    spec = engine.inputs[0]
    x = _fit_layout(x, spec.shape)
    batch = spec.shape[0] if spec.shape and spec.shape[0] > 0 else 64
    correct = 0
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch].astype(spec.dtype if spec.dtype.startswith("float") else np.float32)
        if len(chunk) < batch and spec.shape and spec.shape[0] > 0:
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
        logits = engine.run({spec.name: chunk})[0][: len(y[i:i + batch])]
        correct += top1_hits(logits, y[i:i + batch])
    return correct / max(len(y), 1)


def _fit_layout(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Eval sets are NCHW (PyTorch/ONNX); a .tflite converted from them takes NHWC images."""
    if x.ndim == 4 and len(shape) == 4 and tuple(x.shape[1:]) != tuple(shape[1:]) \
            and (x.shape[2], x.shape[3], x.shape[1]) == tuple(shape[1:]):
        return x.transpose(0, 2, 3, 1)
    return x


def _warmup_policy(p: pb.WarmupPolicy) -> WarmupPolicy:
    d = WarmupPolicy()  # proto3 zero = "not set": fall back to the defaults
    return WarmupPolicy(p.min_iterations or d.min_iterations, p.min_seconds or d.min_seconds)


def _measure_policy(p: pb.MeasurePolicy) -> MeasurePolicy:
    d = MeasurePolicy()
    return MeasurePolicy(p.min_iterations or d.min_iterations, p.min_seconds or d.min_seconds,
                         p.max_iterations or d.max_iterations, p.max_seconds or d.max_seconds)


def _time_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e6


def _peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes


def _shapes(feeds) -> str:
    return ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
