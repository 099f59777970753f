"""The controller's only gRPC caller: one AgentClient per board."""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc

from controller.security import ChannelSecurity, security_for
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

CHUNK_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 5.0
# INTERNAL too: grpc.aio reports an upload stream cut off by an agent that died as "Internal error
# from Core" about one time in fifteen (tests/test_faults_netns.py); our agent never sends it itself.
_TRANSPORT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.INTERNAL}
_BOARD_FAULT_CODES = {grpc.StatusCode.DATA_LOSS, grpc.StatusCode.RESOURCE_EXHAUSTED}  # agent/server.py


class AgentUnreachableError(Exception):
    """The agent did not answer: not running, wrong address, or the link is down."""


class AgentRejectedError(Exception):
    """The agent answered but refused the request (bad upload, oversize, disk full)."""


class AgentFaultError(AgentRejectedError):
    """A refusal that is no fault of the request (the board's disk is full, an upload arrived
    damaged): another board may well take it."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


# A cut link is silent: without pings a job's stream would hang until its deadline (timeout + 60 s).
# Ping every KEEPALIVE_S while a call is open, give up KEEPALIVE_TIMEOUT_S later; a Benchmark stream
# sends nothing after its request, so pings must not stop for want of data (max_pings_without_data 0).
# The agent allows pings this often (agent/server.py).
KEEPALIVE_S, KEEPALIVE_TIMEOUT_S = 10, 5
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
                    ("grpc.keepalive_time_ms", KEEPALIVE_S * 1000),
                    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_S * 1000),
                    ("grpc.http2.max_pings_without_data", 0)]


class AgentClient:
    def __init__(self, name: str, address: str, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 security: ChannelSecurity | None = None) -> None:
        """security: None picks by address (plaintext on loopback, mutual TLS elsewhere)."""
        self.name, self.address = name, address
        self._security = security or security_for(address)
        self._metadata = self._security.metadata()
        self._channel = grpc.secure_channel(address, self._security.credentials(), options=_CHANNEL_OPTIONS) \
            if self._security.tls else grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.AgentStub(self._channel)
        self._connect_timeout_s = connect_timeout_s
        self.device_info: pb.DeviceInfo | None = None  # what Describe said on connect

    def connect(self) -> pb.DeviceInfo:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self._connect_timeout_s)
        except grpc.FutureTimeoutError:
            raise AgentUnreachableError(
                f"device {self.name!r}: no agent answered at {self.address} within {self._connect_timeout_s:g} s; "
                f"start one there with 'edgefarm-agent serve' or fix host/port in devices.yaml") from None
        self.device_info = self.describe()
        return self.device_info

    def describe(self) -> pb.DeviceInfo:
        return self._call(self._stub.Describe, pb.DescribeRequest(), timeout=30)

    def health(self) -> pb.HealthStatus:
        return self._call(self._stub.Health, pb.HealthRequest(), timeout=10)

    def missing(self, digests: list[str]) -> list[str]:
        present = set(self._call(self._stub.HasArtifacts, pb.HasArtifactsRequest(sha256=digests), timeout=30).present)
        return [d for d in digests if d not in present]

    def upload(self, path: Path, sha256: str, on_bytes: Callable[[int], None] | None = None) -> pb.ArtifactRef:
        return self._call(self._stub.UploadArtifact, _chunks(path, sha256, on_bytes), timeout=600)

    def ensure_uploaded(self, path: Path, sha256: str, on_bytes: Callable[[int], None] | None = None) -> int:
        """Ship the artifact unless the agent has it; returns the bytes sent."""
        if not self.missing([sha256]):
            return 0
        return self.upload(path, sha256, on_bytes).bytes_received

    def benchmark(self, spec: pb.BenchmarkSpec) -> Iterator[pb.BenchmarkEvent]:
        try:
            yield from self._stub.Benchmark(spec, timeout=(spec.timeout_seconds or 600) + 60,
                                            metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout: float):
        try:
            return method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: grpc.RpcError) -> Exception:
        return translate_rpc_error(self.name, self.address, exc)


def translate_rpc_error(name: str, address: str, exc: grpc.RpcError) -> Exception:
    """Transport trouble (retry elsewhere) vs. a refusal (the request itself was wrong)."""
    code, details = exc.code(), exc.details()
    if code in _TRANSPORT_CODES:
        return AgentUnreachableError(f"device {name!r} at {address}: {code.name.lower()}: {details}")
    if code in _BOARD_FAULT_CODES:
        return AgentFaultError(f"device {name!r} at {address} refused: {details}")
    return AgentRejectedError(f"device {name!r} at {address} refused: {details}")


def _chunks(path: Path, sha256: str, on_bytes: Callable[[int], None] | None) -> Iterator[pb.ArtifactChunk]:
    """The first chunk carries the hash and size, even for an empty file."""
    with open(path, "rb") as f:
        data = f.read(CHUNK_BYTES)
        yield pb.ArtifactChunk(sha256=sha256, total_size=path.stat().st_size, data=data)
        while data:
            if on_bytes:
                on_bytes(len(data))
            data = f.read(CHUNK_BYTES)
            if data:
                yield pb.ArtifactChunk(data=data)


class AsyncAgentClient:
    """The grpc.aio twin of AgentClient, for fanning jobs out to many boards at once."""

    def __init__(self, name: str, address: str, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 security: ChannelSecurity | None = None) -> None:
        self.name, self.address = name, address
        security = security or security_for(address)
        self._metadata = security.metadata()
        self._channel = grpc.aio.secure_channel(address, security.credentials(), options=_CHANNEL_OPTIONS) \
            if security.tls else grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.AgentStub(self._channel)
        self._connect_timeout_s = connect_timeout_s

    async def connect(self) -> pb.DeviceInfo:
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self._connect_timeout_s)
        except TimeoutError:
            raise AgentUnreachableError(
                f"device {self.name!r}: no agent answered at {self.address} within {self._connect_timeout_s:g} s"
            ) from None
        return await self._call(self._stub.Describe(pb.DescribeRequest(), timeout=30, metadata=self._metadata))

    async def health(self) -> pb.HealthStatus:
        return await self._call(self._stub.Health(pb.HealthRequest(), timeout=10, metadata=self._metadata))

    async def ensure_uploaded(self, path: Path, sha256: str) -> int:
        request = pb.HasArtifactsRequest(sha256=[sha256])
        reply = await self._call(self._stub.HasArtifacts(request, timeout=30, metadata=self._metadata))
        if sha256 in reply.present:
            return 0
        upload = self._stub.UploadArtifact(_async_chunks(path, sha256), timeout=600, metadata=self._metadata)
        return (await self._call(upload)).bytes_received

    async def benchmark(self, spec: pb.BenchmarkSpec) -> AsyncIterator[pb.BenchmarkEvent]:
        try:
            call = self._stub.Benchmark(spec, timeout=(spec.timeout_seconds or 600) + 60, metadata=self._metadata)
            async for event in call:
                yield event
        except grpc.RpcError as exc:
            raise translate_rpc_error(self.name, self.address, exc) from None

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, call):
        try:
            return await call
        except grpc.RpcError as exc:
            raise translate_rpc_error(self.name, self.address, exc) from None


async def _async_chunks(path: Path, sha256: str) -> AsyncIterator[pb.ArtifactChunk]:
    for chunk in _chunks(path, sha256, None):
        yield chunk
