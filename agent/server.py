"""The agent's gRPC service: the only agent module that speaks gRPC."""
from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from concurrent import futures
from typing import Callable, Iterator

import grpc

from edgefarm.agent import __version__
from edgefarm.agent.describe import describe
from edgefarm.agent.pb import failure_event
from edgefarm.agent.security import TokenInterceptor
from edgefarm.agent.store import ArtifactCorruptError, ArtifactError, ArtifactStore, StoreFullError, validate_sha256
from edgefarm.agent.worker import run_in_worker
from edgefarm.protos import agent_pb2 as pb
from edgefarm.protos import agent_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_SECONDS = 600.0
# Refusals that are no fault of the artifact: the controller retries them on another board.
_UPLOAD_REFUSALS = {ArtifactCorruptError: grpc.StatusCode.DATA_LOSS, StoreFullError: grpc.StatusCode.RESOURCE_EXHAUSTED}


# How a job runs: (spec, artifact path, eval path or None, timeout_s, engine_cache_dir=, inputs_path=,
# fidelity_path=) -> its events, ending with one Result or Failure.
JobRunner = Callable[..., Iterator[pb.BenchmarkEvent]]


class AgentService(pb_grpc.AgentServicer):
    def __init__(self, store: ArtifactStore, run_job: JobRunner = run_in_worker) -> None:
        """run_job: a worker process per job (run_in_worker), on every board. Only benchmark P6-1000,
        which serves many simulated agents from one process, runs its jobs in-thread instead
        (benchmarks/agent_host.py)."""
        self.store = store
        self._run_job_in = run_job
        # Built engines live inside the store's folder, beside its tmp/; the store counts and evicts
        # only sha256-named files, so they are outside its size cap.
        self.engine_cache_dir = store.root / "engines"
        self._device: pb.DeviceInfo | None = None
        self._one_job = threading.Lock()  # one job per board at a time: jobs queue here
        self._started = time.monotonic()
        # jobs_run / engine_builds / engine_cache_hits, reported by Health (benchmark P3)
        self.counters = pb.HealthStatus()

    def device(self) -> pb.DeviceInfo:
        if self._device is None:
            self._device = describe()
        return self._device

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.DeviceInfo:
        return self.device()

    def HasArtifacts(self, request: pb.HasArtifactsRequest, context) -> pb.HasArtifactsResponse:
        return pb.HasArtifactsResponse(present=self.store.present(request.sha256))

    def UploadArtifact(self, request_iterator: Iterator[pb.ArtifactChunk], context) -> pb.ArtifactRef:
        first = next(request_iterator, None)
        if first is None:
            log.warning("refused an empty upload")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload: the first chunk must carry sha256")
        try:
            return self._receive(first, request_iterator)
        except ArtifactError as exc:
            code = _UPLOAD_REFUSALS.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT)
            # %r: the name is the client's, not yet validated
            log.warning("refused upload of artifact %r (%s): %s", first.sha256[:12], code.name, exc)
            context.abort(code, str(exc))

    def _receive(self, first: pb.ArtifactChunk, rest: Iterator[pb.ArtifactChunk]) -> pb.ArtifactRef:
        sha = validate_sha256(first.sha256)
        if self.store.has(sha):
            for _ in rest:  # drain: the client may already be streaming
                pass
            size = self.store.touch(sha).stat().st_size
            log.info("artifact %s already present (%d bytes)", sha[:12], size)
            return pb.ArtifactRef(sha256=sha, size=size, already_present=True)
        writer = self.store.writer(sha, first.total_size)
        try:
            writer.write(first.data)
            for chunk in rest:
                writer.write(chunk.data)
            writer.commit()
        except StoreFullError:
            writer.abort()
            _drain(rest, first.total_size - writer.received)
            raise
        except BaseException:
            writer.abort()
            raise
        log.info("stored artifact %s (%d bytes)", sha[:12], writer.received)
        return pb.ArtifactRef(sha256=sha, size=writer.received, bytes_received=writer.received)

    def Benchmark(self, request: pb.BenchmarkSpec, context) -> Iterator[pb.BenchmarkEvent]:
        wanted = (request.artifact_sha256, request.eval_artifact_sha256, request.inputs_artifact_sha256,
                  request.fidelity_artifact_sha256)
        missing = [s for s in wanted if s and not self.store.has(s)]
        if missing:
            log.warning("refused job %s: artifact(s) %s not on this agent", request.job_id or "(no id)",
                        ", ".join(s[:12] for s in missing))
            yield failure_event(pb.Failure.BAD_INPUT, f"artifact(s) not on this agent: {', '.join(missing)}; "
                                                      "upload them first")
            return
        with self._one_job:
            yield from self._run_job(request)

    def _run_job(self, spec: pb.BenchmarkSpec) -> Iterator[pb.BenchmarkEvent]:
        spec.job_id = spec.job_id or uuid.uuid4().hex
        model = str(self.store.touch(spec.artifact_sha256))
        log.info("job %s: %s on artifact %s", spec.job_id, spec.backend, spec.artifact_sha256[:12])
        eval_path = self._path(spec.eval_artifact_sha256) or None
        for event in self._run_job_in(spec, model, eval_path, spec.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
                                      engine_cache_dir=str(self.engine_cache_dir),
                                      inputs_path=self._path(spec.inputs_artifact_sha256),
                                      fidelity_path=self._path(spec.fidelity_artifact_sha256)):
            if event.WhichOneof("event") == "result":
                event.result.device.CopyFrom(self.device())
                self._count(event.result)
            yield event

    def _path(self, sha256: str) -> str:
        """The stored artifact's path ("" when the job names none), marked as recently used."""
        return str(self.store.touch(sha256)) if sha256 else ""

    def _count(self, result: pb.Result) -> None:
        self.counters.jobs_run += 1
        if result.engine_cache_hit:
            self.counters.engine_cache_hits += 1
        elif result.engine_build_ms > 0:
            self.counters.engine_builds += 1

    def Health(self, request: pb.HealthRequest, context) -> pb.HealthStatus:
        status = pb.HealthStatus(serving=True, busy=self._one_job.locked(),
                                 disk_free_bytes=shutil.disk_usage(self.store.root).free,
                                 cache_bytes=self.store.total_bytes(), artifacts=self.store.count(),
                                 agent_version=__version__, uptime_seconds=time.monotonic() - self._started,
                                 bytes_received=self.store.bytes_received)
        status.MergeFrom(self.counters)
        return status


def _drain(chunks: Iterator[pb.ArtifactChunk], declared_left: int) -> None:
    """Read (and drop) what the client still sends before refusing: a grpc.aio client whose upload
    is cut off mid-stream reports "Internal error from Core" instead of the agent's reason."""
    for chunk in chunks:
        declared_left -= len(chunk.data)
        if declared_left < 0:
            return  # more than it declared: refuse now


MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MIN_PING_INTERVAL_MS = 5_000


def make_server(service: AgentService, host: str, port: int, workers: int = 8,
                credentials: grpc.ServerCredentials | None = None, token: str | None = None) -> tuple:
    """Bind (port 0 = ephemeral) and return (server, bound_port); not started yet.
    credentials: mutual TLS; token: every call must carry the farm token."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         interceptors=[TokenInterceptor(token)] if token else None,
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                  # The controller pings every 10 s during a call to notice a cut link;
                                  # the default (one ping per 5 min without data) would answer GOAWAY.
                                  ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS)])
    pb_grpc.add_AgentServicer_to_server(service, server)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (address in use or not local)")
    return server, bound
