"""The agent as a real process over real gRPC, driven by the controller's real client."""
import math
import os
import signal
import threading
import time

import psutil
import pytest

from benchmarks.models import mlp_model
from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentClient, AgentRejectedError
from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.agents.records import BenchmarkResult, Failure, JobSpec, Progress


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    with LocalAgent(tmp_path_factory.mktemp("agent-cache")) as local:
        client = AgentClient("local", local.address)
        client.connect()
        yield local, client
        client.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory, agent):
    path = mlp_model(tmp_path_factory.mktemp("m") / "mlp.onnx", width=128)
    sha = sha256_file(path)
    agent[1].ensure_uploaded(path, sha)
    return path, sha


def _spec(sha: str, min_seconds: float = 0.1, **kw) -> JobSpec:
    # No iteration cap: a long job must last its min_seconds however fast this machine runs the model.
    return JobSpec(job_id="", artifact_sha256=sha, backend="onnxruntime", threads=1, warmup_iterations=5,
                   warmup_seconds=0.05, min_iterations=50, min_seconds=min_seconds, max_iterations=2**31 - 1,
                   **kw)


def _final(client: AgentClient, spec: JobSpec) -> BenchmarkResult | Failure:
    events = list(client.benchmark(spec))
    assert isinstance(events[-1], BenchmarkResult | Failure)
    assert sum(isinstance(e, BenchmarkResult | Failure) for e in events) == 1
    assert all(isinstance(e, Progress) for e in events[:-1])
    return events[-1]


def _result(client: AgentClient, spec: JobSpec) -> BenchmarkResult:
    final = _final(client, spec)
    assert isinstance(final, BenchmarkResult), final
    return final


def _failure(client: AgentClient, spec: JobSpec) -> Failure:
    final = _final(client, spec)
    assert isinstance(final, Failure), final
    return final


def test_describe_reports_this_machine(agent):
    info = agent[1].describe()
    assert info.cpu_cores == os.cpu_count()
    assert info.ram_bytes > 1 << 30
    assert info.protocol_version == "edgefarm.v1.2"
    ort = [r for r in info.runtimes if r.name == "onnxruntime"]
    assert ort and "CPUExecutionProvider" in ort[0].providers


def test_benchmark_returns_raw_samples_and_statistics(agent, model):
    result = _result(agent[1], _spec(model[1]))
    assert result.latency.count == len(result.samples_ns) >= 50
    assert 0 < result.latency.min_ms <= result.latency.p50_ms <= result.latency.p99_ms <= result.latency.max_ms
    assert result.fps > 0 and result.load_ms > 0 and result.first_inference_ms > 0
    assert result.peak_rss_bytes > 10 << 20
    assert result.provider == "CPUExecutionProvider"
    assert not result.compute_separable
    assert result.device.cpu_cores == os.cpu_count()
    assert result.environment.versions["agent"]


def test_power_is_not_available_without_a_sensor_never_invented(agent, model):
    power = _result(agent[1], _spec(model[1])).power
    if power.available:  # a workstation with RAPL exposed: then it must be a real reading
        assert power.sample_count > 0 and power.sensor
    else:
        assert power.unavailable_reason and power.sample_count == 0
        assert math.isnan(power.energy_per_inference_mj) and math.isnan(power.avg_power_w)


def test_reupload_sends_nothing(agent, model):
    path, sha = model
    assert agent[1].ensure_uploaded(path, sha) == 0
    assert agent[1].missing([sha]) == []


def test_corrupted_upload_is_rejected_and_leaves_nothing(agent, tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3 << 20))
    wrong = "c" * 64
    with pytest.raises(AgentRejectedError, match="upload rejected"):
        agent[1].upload(blob, wrong)
    assert agent[1].missing([wrong]) == [wrong]


def test_bad_model_fails_cleanly_and_the_agent_keeps_serving(agent, model, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage")
    agent[1].ensure_uploaded(junk, sha256_file(junk))
    failure = _failure(agent[1], _spec(sha256_file(junk)))
    assert failure.kind == "bad-input" and "cannot load the model" in failure.message
    _result(agent[1], _spec(model[1]))


def test_unknown_artifact_is_bad_input(agent):
    failure = _failure(agent[1], _spec("d" * 64))
    assert failure.kind == "bad-input" and "upload them first" in failure.message


def test_timeout_kills_the_job_and_the_agent_keeps_serving(agent, model):
    failure = _failure(agent[1], _spec(model[1], min_seconds=30, timeout_seconds=1.5))
    assert failure.kind == "timeout"
    _result(agent[1], _spec(model[1]))


def test_worker_killed_by_a_signal_is_a_backend_crash(agent, model):
    local, client = agent
    killer = threading.Thread(target=_segfault_worker_of, args=(local.pid,))
    killer.start()
    failure = _failure(client, _spec(model[1], min_seconds=20, timeout_seconds=60))
    killer.join()
    assert failure.kind == "backend-crash" and "SIGSEGV" in failure.message
    assert client.health().serving
    _result(client, _spec(model[1]))


def _segfault_worker_of(agent_pid: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        workers = [c for c in psutil.Process(agent_pid).children() if "edgefarm.agent.worker" in " ".join(c.cmdline())]
        if workers:
            time.sleep(1.0)  # let it get into the measuring loop
            os.kill(workers[0].pid, signal.SIGSEGV)
            return
        time.sleep(0.05)


def test_health(agent, model):
    health = agent[1].health()
    assert health.serving and not health.busy
    assert health.artifacts >= 1 and health.cache_bytes > 0 and health.disk_free_bytes > 0


def test_rerun_loads_the_cached_engine_and_health_counts_it(agent, tmp_path):
    local, client = agent
    path = mlp_model(tmp_path / "fresh.onnx", width=96)  # a model no other test has built
    sha = sha256_file(path)
    client.ensure_uploaded(path, sha)
    before = client.health()
    first, second = (_result(client, _spec(sha)) for _ in range(2))
    after = client.health()
    assert (first.engine_cache_hit, second.engine_cache_hit) == (False, True)
    assert first.engine_build_ms > 0 and second.engine_build_ms == 0
    assert (after.engine_builds - before.engine_builds, after.engine_cache_hits - before.engine_cache_hits,
            after.jobs_run - before.jobs_run) == (1, 1, 2)
    assert any((local.cache_dir / "engines").glob("onnxruntime-*.onnx"))  # inside the agent's own folder


def test_throughput_mode_runs_concurrent_streams(agent, model):
    single = _result(agent[1], _spec(model[1]))
    streamed = _result(agent[1], _spec(model[1], streams=2))
    assert single.streams == 1 and streamed.streams == 2
    assert streamed.latency.count == len(streamed.samples_ns) >= 50
    assert streamed.fps > 0


def test_result_names_the_runtime_version(agent, model):
    import onnxruntime

    versions = _result(agent[1], _spec(model[1])).environment.versions
    assert versions["onnxruntime"] == onnxruntime.__version__
