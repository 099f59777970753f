"""The controller's only gRPC caller: one AsyncAgentClient per board, and a blocking façade over it."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from edgefarm.controller.agents import wire
from edgefarm.controller.agents.records import DeviceInfo, HealthStatus, JobSpec
from edgefarm.controller.agents.security import ChannelSecurity, security_by_address, security_for
from edgefarm.protos import agent_pb2 as pb
from edgefarm.protos import agent_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from edgefarm.controller.config.inventory import Device

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


# A cut link is silent: without pings a job's stream would hang until its deadline (timeout + 60 s).
# Ping every KEEPALIVE_S while a call is open, give up KEEPALIVE_TIMEOUT_S later; a Benchmark stream
# sends nothing after its request, so pings must not stop for want of data (max_pings_without_data 0).
# The agent allows pings this often (agent/server.py).
KEEPALIVE_S, KEEPALIVE_TIMEOUT_S = 10, 5
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
                    ("grpc.keepalive_time_ms", KEEPALIVE_S * 1000),
                    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_S * 1000),
                    ("grpc.http2.max_pings_without_data", 0)]


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
    """One board's agent over grpc.aio: what the farm runner, `edgefarm run` and the canary all use.
    It speaks records (controller/agents/records.py); wire.py converts at this edge."""

    def __init__(self, name: str, address: str, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 security: ChannelSecurity | None = None) -> None:
        """security: None picks by address (plaintext on loopback, mutual TLS elsewhere); a board from
        devices.yaml is dialled as its `security` key says, through for_device()."""
        self.name, self.address = name, address
        security = security or security_by_address(name, address)
        self._security = security
        self._metadata = security.metadata()
        self._channel = grpc.aio.secure_channel(address, security.credentials(), options=_CHANNEL_OPTIONS) \
            if security.tls else grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.AgentStub(self._channel)
        self._connect_timeout_s = connect_timeout_s
        self.device_info: DeviceInfo | None = None  # what Describe said on connect

    @classmethod
    def for_device(cls, device: Device, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> AsyncAgentClient:
        """A client dialling `device` as devices.yaml declares (SecurityError if credentials are missing)."""
        return cls(device.name, device.address, connect_timeout_s, security_for(device))

    async def connect(self) -> DeviceInfo:
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self._connect_timeout_s)
        except TimeoutError:
            raise AgentUnreachableError(await self._why_unreachable()) from None
        self.device_info = await self.describe()
        return self.device_info

    async def _why_unreachable(self) -> str:
        """The real cause, read from one short call's transport error: TLS on one side only, a
        certificate from another CA, or nothing listening at all."""
        try:
            await self._stub.Describe(pb.DescribeRequest(), timeout=2, metadata=self._metadata)
        except grpc.RpcError as exc:
            cause = connect_failure_cause(self.name, self._security.mode, exc.details() or "")
            if cause:
                return f"device {self.name!r} at {self.address}: {cause}"
        return (f"device {self.name!r}: no agent answered at {self.address} within {self._connect_timeout_s:g} s; "
                f"start one there with 'edgefarm-agent serve' or fix host/port in devices.yaml")

    async def describe(self) -> DeviceInfo:
        return wire.device_from_pb(await self._call(self._stub.Describe(pb.DescribeRequest(), timeout=30,
                                                                        metadata=self._metadata)))

    async def health(self) -> HealthStatus:
        return wire.health_from_pb(await self._call(self._stub.Health(pb.HealthRequest(), timeout=10,
                                                                      metadata=self._metadata)))

    async def missing(self, digests: list[str]) -> list[str]:
        request = pb.HasArtifactsRequest(sha256=digests)
        present = set((await self._call(self._stub.HasArtifacts(request, timeout=30, metadata=self._metadata))).present)
        return [d for d in digests if d not in present]

    async def upload(self, path: Path, sha256: str, on_bytes: Callable[[int], None] | None = None) -> int:
        """Ship the artifact; returns the bytes the agent received (0 when it already had it)."""
        upload = self._stub.UploadArtifact(_async_chunks(path, sha256, on_bytes), timeout=600, metadata=self._metadata)
        return (await self._call(upload)).bytes_received

    async def ensure_uploaded(self, path: Path, sha256: str, on_bytes: Callable[[int], None] | None = None) -> int:
        """Ship the artifact unless the agent has it; returns the bytes sent."""
        if not await self.missing([sha256]):
            return 0
        return await self.upload(path, sha256, on_bytes)

    async def ensure_all_uploaded(self, files: Sequence[tuple[Path, str]],
                                  on_bytes: Callable[[int], None] | None = None) -> int:
        """Ship each (path, sha256) the agent lacks, after one HasArtifacts call for all of them (a job's
        model, input data and evaluation set); returns the bytes sent."""
        if not files:
            return 0
        missing, sent = set(await self.missing(list(dict.fromkeys(sha for _, sha in files)))), 0
        for path, sha256 in files:
            if sha256 in missing:
                missing.discard(sha256)   # one upload per digest, however many paths carry it
                sent += await self.upload(path, sha256, on_bytes)
        return sent

    async def benchmark(self, spec: JobSpec) -> AsyncIterator[wire.Event]:
        """Progress records, then exactly one BenchmarkResult or Failure."""
        try:
            call = self._stub.Benchmark(wire.spec_to_pb(spec), timeout=(spec.timeout_seconds or 600) + 60,
                                        metadata=self._metadata)
            async for event in call:
                yield wire.event_from_pb(event)
        except grpc.RpcError as exc:
            raise translate_rpc_error(self.name, self.address, exc) from None

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, call):
        try:
            return await call
        except grpc.RpcError as exc:
            raise translate_rpc_error(self.name, self.address, exc) from None


async def _async_chunks(path: Path, sha256: str,
                        on_bytes: Callable[[int], None] | None) -> AsyncIterator[pb.ArtifactChunk]:
    for chunk in _chunks(path, sha256, on_bytes):
        yield chunk


def connect_failure_cause(name: str, mode: str, details: str) -> str | None:
    """What a failed connection's transport error means, in the words of devices.yaml; None when it is
    plainly no agent at all (connection refused, no route) or unknown."""
    if mode != "tls" and "Socket closed" in details:
        return (f"the agent closed a {mode} connection: it probably expects TLS; set 'security: tls' for "
                f"{name} in devices.yaml (and 'edgefarm ca issue {name}' if it has no certificate)")
    if mode != "tls":
        return None
    if "WRONG_VERSION_NUMBER" in details:
        return (f"board {name!r} expects TLS (security: tls) but the agent there answers without TLS; "
                f"serve it with --tls-dir (certificate: 'edgefarm ca issue {name}'), or declare the security it has")
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return (f"the agent's certificate is not from this farm's CA; issue one with 'edgefarm ca issue {name}' "
                "and install it in the agent's --tls-dir")
    if "Socket closed" in details:
        return ("the agent refused this controller's certificate: it trusts another CA; install this farm's "
                f"ca.crt on it ('edgefarm ca issue {name}' writes the set)")
    return None


class AgentClient:
    """A blocking façade over AsyncAgentClient, for callers with no event loop of their own
    (`edgefarm devices status`, provisioning's check, tools and benchmarks). Its event loop runs on a
    private thread, so the one client implementation serves both."""

    def __init__(self, name: str, address: str, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 security: ChannelSecurity | None = None) -> None:
        self.name, self.address = name, address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"agent-client-{name}", daemon=True)
        self._thread.start()
        self._client: AsyncAgentClient = self._wait(_make_client(name, address, connect_timeout_s, security))

    @classmethod
    def for_device(cls, device: Device, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> AgentClient:
        """A client dialling `device` as devices.yaml declares (SecurityError if credentials are missing)."""
        return cls(device.name, device.address, connect_timeout_s, security_for(device))

    @property
    def device_info(self) -> DeviceInfo | None:
        return self._client.device_info

    def connect(self) -> DeviceInfo:
        return self._wait(self._client.connect())

    def describe(self) -> DeviceInfo:
        return self._wait(self._client.describe())

    def health(self) -> HealthStatus:
        return self._wait(self._client.health())

    def missing(self, digests: list[str]) -> list[str]:
        return self._wait(self._client.missing(digests))

    def upload(self, path: Path, sha256: str, on_bytes: Callable[[int], None] | None = None) -> int:
        return self._wait(self._client.upload(path, sha256, on_bytes))

    def ensure_uploaded(self, path: Path, sha256: str, on_bytes: Callable[[int], None] | None = None) -> int:
        return self._wait(self._client.ensure_uploaded(path, sha256, on_bytes))

    def benchmark(self, spec: JobSpec) -> Iterator[wire.Event]:
        events = self._client.benchmark(spec)
        while True:
            try:
                yield self._wait(events.__anext__())
            except StopAsyncIteration:
                return

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._wait(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _wait(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


async def _make_client(name: str, address: str, connect_timeout_s: float,
                       security: ChannelSecurity | None) -> AsyncAgentClient:
    """grpc.aio binds a channel to the loop that is running when it is made: make it on the client's own."""
    return AsyncAgentClient(name, address, connect_timeout_s, security)
