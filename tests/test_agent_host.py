"""benchmarks/agent_host.py (many simulated agents to a process) and benchmark P6 run small, so the
scale benchmark keeps working with the runner it measures (it once broke unnoticed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import scale
from benchmarks.agent_host import AgentHost
from edgefarm.agent.backends.simulated import PROVIDER, write_artifact
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.agents.records import BenchmarkResult, Failure, JobSpec


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    agents = AgentHost(3, tmp_path_factory.mktemp("host")).start()
    try:
        agents.wait_ready()
        yield agents
    finally:
        agents.stop()


def _final(client: AgentClient, spec: JobSpec) -> BenchmarkResult | Failure:
    return [event for event in client.benchmark(spec) if isinstance(event, BenchmarkResult | Failure)][-1]


def test_each_hosted_agent_is_a_real_agent_on_its_own_port_with_its_own_store(host: AgentHost, tmp_path: Path):
    artifact = write_artifact(tmp_path / "sim.json", 1.0)
    sha = sha256_file(artifact)
    assert len(set(host.addresses)) == 3
    for n, address in enumerate(host.addresses):
        client = AgentClient(f"hosted-{n}", address)
        try:
            client.connect()
            assert client.missing([sha]) == [sha]   # nothing shared between the agents of a host
            assert client.ensure_uploaded(artifact, sha) > 0
            final = _final(client, JobSpec(job_id=f"j{n}", artifact_sha256=sha, backend="simulated",
                                           warmup_iterations=1, min_iterations=3, max_iterations=3))
            assert isinstance(final, BenchmarkResult) and final.provider == PROVIDER and len(final.samples_ns) == 3
        finally:
            client.close()


def test_a_hosted_agent_runs_the_simulated_backend_only(host: AgentHost, tmp_path: Path):
    artifact = write_artifact(tmp_path / "sim.json", 1.0)
    client = AgentClient("hosted-0", host.addresses[0])
    try:
        client.ensure_uploaded(artifact, sha256_file(artifact))
        final = _final(client, JobSpec(job_id="j", artifact_sha256=sha256_file(artifact), backend="onnxruntime"))
        assert isinstance(final, Failure) and final.kind == "bad-input" and "simulated backend only" in final.message
    finally:
        client.close()


def test_the_scale_benchmark_schedules_every_job_and_loses_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(scale, "HOSTS", 2)
    run = scale.run_scale(tmp_path / "p6", scale.hosted_agents(tmp_path / "p6" / "agents", 6))
    overhead, lost = scale.run_figures("P6-6", run)
    assert (run.jobs, run.outcome.done, run.outcome.failed, run.lost) == (12, 12, [], 0)
    assert lost.value == 0 and overhead.value > 0
    assert "6 agents served by 2 processes, jobs in-thread" in overhead.reference
    assert all(calls[0].kind == "connect" for calls in run.log.calls.values())
    assert all([call.kind for call in calls].count("connect") == 1 for calls in run.log.calls.values())
