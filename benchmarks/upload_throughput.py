"""P2: artifact upload throughput to a real local agent over loopback ÷ a raw TCP socket sending
the same bytes to a receiver that does what the agent's store does with them (sha256 while
receiving, write to a file, compare at the end), in the same run, interleaved; and the bytes
re-shipped when the same artifact is ensured a second time (the agent's Health counter)."""
from __future__ import annotations

import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.figures import Figure
from benchmarks.harness_overhead import local_client
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import CHUNK_BYTES, AgentClient

ARTIFACT_MIB = 96
ROUNDS = 5
REPO = Path(__file__).resolve().parent.parent
_HEADER_BYTES = 8 + 32          # size (big-endian) + binary sha256
_RECEIVER_START_S = 30.0


def upload_figures(cache_dir: Path) -> list[Figure]:
    artifact = random_artifact(cache_dir / "upload.bin", ARTIFACT_MIB << 20)
    sha = sha256_file(artifact)
    agent_cache = cache_dir / "p2-agent"
    with local_client(agent_cache) as client, raw_receiver(cache_dir) as port:
        grpc_s, raw_s = interleaved(lambda: timed_upload(client, artifact, sha, agent_cache),
                                    lambda: timed_raw_send(port, artifact, sha))
        reshipped = reship_bytes(client, artifact, sha)
    grpc_mib_s, raw_mib_s = ARTIFACT_MIB / statistics.median(grpc_s), ARTIFACT_MIB / statistics.median(raw_s)
    return [
        Figure("P2-ratio", "artifact upload throughput ÷ raw TCP", grpc_mib_s / raw_mib_s, "x",
               f"gRPC upload to a local agent {grpc_mib_s:.0f} MiB/s / raw TCP socket + sha256 + file write "
               f"{raw_mib_s:.0f} MiB/s; {ARTIFACT_MIB} MiB over loopback, medians of {ROUNDS} interleaved rounds",
               ">= 0.5"),
        Figure("P2-reship-bytes", "bytes re-shipped for an artifact already there", float(reshipped), "B",
               f"agent Health bytes_received before/after ensuring the same {ARTIFACT_MIB} MiB artifact again",
               "<= 0"),
    ]


def random_artifact(path: Path, size: int) -> Path:
    """Incompressible bytes: nothing on the way can make them cheaper than a real model's weights."""
    with open(path, "wb") as f:
        for _ in range(size // CHUNK_BYTES):
            f.write(os.urandom(CHUNK_BYTES))
    return path


def interleaved(first: Callable[[], float], second: Callable[[], float]) -> tuple[list[float], list[float]]:
    """ABBA order, so drift on a shared machine hits both alike."""
    a, b = [], []
    for i in range(ROUNDS):
        steps = [(first, a), (second, b)]
        for measure, into in steps if i % 2 == 0 else steps[::-1]:
            into.append(measure())
    return a, b


def timed_upload(client: AgentClient, artifact: Path, sha: str, agent_cache: Path) -> float:
    (agent_cache / sha).unlink(missing_ok=True)  # the agent keeps what it has: make it receive again
    start = time.perf_counter()
    received = client.upload(artifact, sha)
    elapsed = time.perf_counter() - start
    if received != artifact.stat().st_size:
        raise RuntimeError(f"the agent received {received} bytes, not {artifact.stat().st_size}")
    return elapsed


def reship_bytes(client: AgentClient, artifact: Path, sha: str) -> int:
    client.ensure_uploaded(artifact, sha)
    before = client.health().bytes_received
    client.ensure_uploaded(artifact, sha)
    return client.health().bytes_received - before


def timed_raw_send(port: int, artifact: Path, sha: str) -> float:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock, open(artifact, "rb") as f:
        sock.sendall(artifact.stat().st_size.to_bytes(8, "big") + bytes.fromhex(sha))
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            sock.sendall(block)
        verdict = sock.recv(1)
    elapsed = time.perf_counter() - start
    if verdict != b"\x01":
        raise RuntimeError("the raw receiver saw a different sha256")
    return elapsed


@contextmanager
def raw_receiver(folder: Path) -> Iterator[int]:
    """The reference receiver in its own process, as the agent is; yields its port."""
    code = f"from benchmarks.upload_throughput import serve_raw; serve_raw({str(folder)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        yield _read_port(proc)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def _read_port(proc: subprocess.Popen) -> int:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=_RECEIVER_START_S):
            raise RuntimeError(f"the raw receiver did not start within {_RECEIVER_START_S:g} s")
        return int(proc.stdout.readline())


def serve_raw(folder: str) -> None:
    """Receiver process: per connection, hash and write what arrives, answer 1 if the sha256 matches."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(server.getsockname()[1], flush=True)
        while True:  # ends when the benchmark kills this process
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"\x01" if _receive_one(conn, Path(folder)) else b"\x00")


def _receive_one(conn: socket.socket, folder: Path) -> bool:
    header = _read_exactly(conn, _HEADER_BYTES)
    left, digest, buffer = int.from_bytes(header[:8], "big"), hashlib.sha256(), bytearray(CHUNK_BYTES)
    with tempfile.NamedTemporaryFile(dir=folder) as out:  # the agent's store writes a temp file too
        while left:
            n = conn.recv_into(memoryview(buffer)[:min(left, CHUNK_BYTES)])
            if n == 0:
                return False
            digest.update(memoryview(buffer)[:n])
            out.write(memoryview(buffer)[:n])
            left -= n
    return digest.digest() == header[8:]


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            raise ConnectionError("sender closed early")
        data += more
    return data
