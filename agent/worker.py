"""Runs one job in a child process (pyperf style): the parent only spawns, relays
events and enforces the timeout, so a runtime that segfaults or hangs cannot take
the agent down.

Events travel as length-prefixed BenchmarkEvent messages over a dedicated pipe,
not stdout, because runtimes print to stdout at will.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Iterator, Sequence

from edgefarm.agent.pb import failure_event
from edgefarm.protos import agent_pb2 as pb

log = logging.getLogger(__name__)
_LEN = struct.Struct("<I")
_KILL_GRACE_SECONDS = 2.0


WORKER_COMMAND = (sys.executable, "-m", "edgefarm.agent.worker")


def run_in_worker(spec: pb.BenchmarkSpec, artifact_path: str, eval_path: str | None, timeout_s: float,
                  command: Sequence[str] = WORKER_COMMAND, engine_cache_dir: str = "", inputs_path: str = "",
                  fidelity_path: str = "") -> Iterator[pb.BenchmarkEvent]:
    """Yield the child's events; always ends with exactly one Result or Failure.

    `engine_cache_dir` is where the child keeps built engines between jobs; "" builds every time.
    `inputs_path` and `fidelity_path` are the job's input-data and fidelity artifacts ("" = none).
    """
    read_fd, write_fd = os.pipe()
    cmd = list(command) + [str(write_fd), artifact_path, eval_path or "", engine_cache_dir, inputs_path, fidelity_path]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    child.stdin.write(spec.SerializeToString())
    child.stdin.close()
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as events:
            for event in _relay(child, events, time.monotonic() + timeout_s, timeout_s):
                _log_outcome(spec.job_id, child.pid, event)
                yield event
    finally:
        if child.poll() is None:  # the caller went away mid-job (client cancelled)
            log.warning("job %s: caller went away; killing worker pid %d", spec.job_id, child.pid)
            _kill(child)
        child.stderr.close()


def _log_outcome(job_id: str, pid: int, event: pb.BenchmarkEvent) -> None:
    """One record per job: its result, or why it failed (a refusal, a crash, a timeout)."""
    kind, failure = event.WhichOneof("event"), event.failure
    if kind == "result":
        log.info("job %s: %d samples, p50 %.3f ms", job_id, event.result.latency.count, event.result.latency.p50_ms)
    elif kind == "failure" and failure.kind == pb.Failure.BAD_INPUT:
        log.warning("job %s refused: %s", job_id, failure.message)
    elif kind == "failure":  # a crash or a timeout
        log.warning("job %s failed (%s, worker pid %d): %s", job_id, pb.Failure.Kind.Name(failure.kind), pid,
                    failure.message)


def _relay(child: subprocess.Popen, events, deadline: float, timeout_s: float) -> Iterator[pb.BenchmarkEvent]:
    reader = _FrameReader(events)
    stderr = _StderrTail(child.stderr.fileno())
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _kill(child)
            yield failure_event(pb.Failure.TIMEOUT, f"job exceeded its {timeout_s:g} s timeout; worker killed")
            return
        watched = [events] + ([stderr.fd] if not stderr.eof else [])
        ready, _, _ = select.select(watched, [], [], remaining)
        if stderr.fd in ready:
            stderr.read_available()
        if events in ready:
            for event in reader.read_available():
                yield event
                if event.WhichOneof("event") in ("result", "failure"):
                    _reap(child)
                    return
            if reader.eof:
                yield _crash_failure(child, stderr)
                return


class _StderrTail:
    """The last lines the child wrote to stderr, read without blocking, for crash reports."""

    def __init__(self, fd: int) -> None:
        self.fd, self.eof, self._text = fd, False, ""

    def read_available(self) -> None:
        data = os.read(self.fd, 65536)
        self.eof = not data
        self._text = (self._text + data.decode(errors="replace"))[-8192:]

    def drain(self) -> None:
        while not self.eof and select.select([self.fd], [], [], 0.5)[0]:
            self.read_available()

    def last_lines(self, n: int) -> list[str]:
        return [line for line in self._text.splitlines() if line.strip()][-n:]


class _FrameReader:
    def __init__(self, stream) -> None:
        self._stream, self._buf, self.eof = stream, b"", False

    def read_available(self) -> list[pb.BenchmarkEvent]:
        data = self._stream.read(1 << 20)
        if not data:
            self.eof = True
        self._buf += data
        out = []
        while len(self._buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self._buf)
            if len(self._buf) < _LEN.size + n:
                break
            out.append(pb.BenchmarkEvent.FromString(self._buf[_LEN.size:_LEN.size + n]))
            self._buf = self._buf[_LEN.size + n:]
        return out


def _crash_failure(child: subprocess.Popen, stderr: _StderrTail) -> pb.BenchmarkEvent:
    code = _reap(child)
    stderr.drain()
    if code is not None and code < 0:
        how = f"worker killed by signal {signal.Signals(-code).name}"
    else:
        how = f"worker exited with code {code} before reporting a result"
    detail = "; ".join(stderr.last_lines(3))
    return failure_event(pb.Failure.BACKEND_CRASH, how + (f": {detail}" if detail else ""))


def _reap(child: subprocess.Popen) -> int | None:
    try:
        return child.wait(timeout=_KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _kill(child)
        return child.returncode


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)  # its own session: takes runtime helper processes too
    except ProcessLookupError:
        pass
    child.wait()


def _child_main(argv: list[str]) -> int:
    """Entry point inside the worker process."""
    from edgefarm.agent.job import Job  # heavy imports only in the child

    out = os.fdopen(int(argv[0]), "wb", buffering=0)

    def emit(event: pb.BenchmarkEvent) -> None:
        data = event.SerializeToString()
        out.write(_LEN.pack(len(data)) + data)

    spec = pb.BenchmarkSpec.FromString(sys.stdin.buffer.read())
    optional = argv[3:] + [""] * (6 - len(argv))
    Job(spec, argv[1], argv[2] or None, emit, engine_cache_dir=optional[0], inputs_path=optional[1],
        fidelity_path=optional[2]).run()
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
