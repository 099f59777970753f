"""Many simulated agents in one process, for benchmark P6-1000 only: each is the agent's own gRPC
service and server (agent/server.py) on a loopback port of its own, with an artifact store of its
own, but its jobs run in the server's thread instead of a worker process each.

Not an agent for a board. A job in a thread is not isolated: a runtime that crashed would take every
agent of the process with it, which is why a real agent spawns a worker per job. Here the only
runtime is the simulated one (its inference is a sleep; its results say "simulated" twice), and what
P6-1000 measures is the controller scheduling a thousand boards, not a job: spawning a Python worker
per job (~0.3 s of CPU) for a thousand agents on this one core would measure the CPU queue instead.

    python -m benchmarks.agent_host --agents 250 --cache-dir DIR   # one "listening on" line per agent
"""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from edgefarm.agent.backends import simulated
from edgefarm.agent.job import Job
from edgefarm.agent.pb import failure_event
from edgefarm.agent.server import AgentService, make_server
from edgefarm.agent.store import ArtifactStore
from edgefarm.protos import agent_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
CACHE_BYTES, ARTIFACT_BYTES = 64 << 20, 1 << 20
SERVER_THREADS = 2      # a job and a HasArtifacts at once; the controller runs one job per board


def run_in_thread(spec: pb.BenchmarkSpec, artifact_path: str, eval_path: str | None, timeout_s: float,
                  engine_cache_dir: str = "", inputs_path: str = "", fidelity_path: str = "") -> Iterator:
    """The worker's job (agent/job.py), in the calling thread; the simulated backend only. No timeout
    is enforced: a simulated inference sleeps at most 10 s (simulated.MAX_LATENCY_MS)."""
    if spec.backend != simulated.NAME:
        yield failure_event(pb.Failure.BAD_INPUT, f"this benchmark's agents run the simulated backend only, "
                                                  f"not {spec.backend!r}")
        return
    events: list[pb.BenchmarkEvent] = []
    Job(spec, artifact_path, eval_path, events.append, engine_cache_dir=engine_cache_dir, inputs_path=inputs_path,
        fidelity_path=fidelity_path).run()
    yield from events


def serve(count: int, cache_dir: Path) -> None:
    servers = []
    for n in range(count):
        store = ArtifactStore(cache_dir / f"agent-{n:04d}", CACHE_BYTES, ARTIFACT_BYTES)
        server, port = make_server(AgentService(store, run_job=run_in_thread), "127.0.0.1", 0, SERVER_THREADS)
        server.start()
        servers.append(server)
        print(f"agent {n} listening on 127.0.0.1:{port}", flush=True)   # read by AgentHost
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop(grace=1)


class AgentHost:
    """One agent_host process, in a session of its own (a CPU share of its own, as another host would
    have: see LocalAgent's own_session); stopped at exit."""

    def __init__(self, count: int, cache_dir: Path) -> None:
        self.count, self.cache_dir, self.addresses = count, cache_dir, []
        self._proc: subprocess.Popen | None = None

    def start(self) -> AgentHost:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / "host.log", "ab") as log:   # a file: an unread pipe would block the host
            self._proc = subprocess.Popen([sys.executable, "-m", "benchmarks.agent_host", "--agents", str(self.count),
                                           "--cache-dir", str(self.cache_dir)], cwd=REPO, stdout=subprocess.PIPE,
                                          stderr=log, text=True, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else -1

    def wait_ready(self) -> list[str]:
        """Every agent's host:port, once all of them listen."""
        watchdog = threading.Timer(START_TIMEOUT_S, self._proc.kill)   # a hung host ends the read with EOF
        watchdog.start()
        try:
            for line in self._proc.stdout:
                if " listening on " in line:
                    self.addresses.append(line.rsplit(" ", 1)[1].strip())
                if len(self.addresses) == self.count:
                    return self.addresses
        finally:
            watchdog.cancel()
        tail = (self.cache_dir / "host.log").read_text(errors="replace")[-500:]
        raise RuntimeError(f"agent host: {len(self.addresses)} of {self.count} agents listening "
                           f"(within {START_TIMEOUT_S:g} s): {tail}")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_host", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, required=True, help="how many agents to serve")
    parser.add_argument("--cache-dir", type=Path, required=True, help="their artifact stores go here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    serve(args.agents, args.cache_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
