"""What the agent logs: uploads stored and refused, jobs refused, workers that crash or time out,
and how `edgefarm-agent serve` sets logging up (journald stamps its own time)."""
from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import pytest

from edgefarm.agent import cli
from edgefarm.agent.server import AgentService
from edgefarm.agent.store import ArtifactStore
from edgefarm.agent.worker import run_in_worker
from edgefarm.protos import agent_pb2 as pb

CRASHING_CHILD = (sys.executable, "-c",
                  "import os, signal, sys; sys.stdin.buffer.read(); os.kill(os.getpid(), signal.SIGSEGV)")
HANGING_CHILD = (sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(); time.sleep(600)")
DATA = b"not really a model, but bytes all the same"
SHA = hashlib.sha256(DATA).hexdigest()


class Aborted(Exception):
    pass


class AbortingContext:
    """The part of grpc.ServicerContext an upload uses: abort() raises, as grpc's does."""

    def abort(self, code, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


@pytest.fixture
def service(tmp_path: Path) -> AgentService:
    return AgentService(ArtifactStore(tmp_path / "store", max_bytes=1 << 20))


@pytest.fixture
def caplog_agent(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="edgefarm.agent")
    return caplog


def upload(service: AgentService, sha: str, data: bytes) -> pb.ArtifactRef:
    chunks = iter([pb.ArtifactChunk(sha256=sha, total_size=len(data), data=data)])
    return service.UploadArtifact(chunks, AbortingContext())


def records(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


def test_a_stored_upload_logs_its_sha_prefix_and_size(service: AgentService, caplog_agent) -> None:
    upload(service, SHA, DATA)
    upload(service, SHA, DATA)
    assert records(caplog_agent, "edgefarm.agent.server") == [
        (logging.INFO, f"stored artifact {SHA[:12]} ({len(DATA)} bytes)"),
        (logging.INFO, f"artifact {SHA[:12]} already present ({len(DATA)} bytes)"),
    ]


def test_an_upload_whose_sha_does_not_match_is_logged_as_refused_with_why(service: AgentService,
                                                                          caplog_agent) -> None:
    with pytest.raises(Aborted, match="upload rejected"):
        upload(service, "a" * 64, DATA)
    [(level, message)] = records(caplog_agent, "edgefarm.agent.server")
    assert level == logging.WARNING
    assert message.startswith(f"refused upload of artifact {'a' * 12!r} (DATA_LOSS): upload rejected: got "
                              f"{len(DATA)} bytes with sha256 {SHA[:16]}")


def test_a_client_chosen_name_is_logged_quoted_and_cut(service: AgentService, caplog_agent) -> None:
    with pytest.raises(Aborted, match="not a sha256"):
        upload(service, "../../etc/passwd\nFAKE RECORD", DATA)
    [(level, message)] = records(caplog_agent, "edgefarm.agent.server")
    assert level == logging.WARNING
    assert message.startswith("refused upload of artifact '../../etc/pa' (INVALID_ARGUMENT)")


def test_a_job_naming_a_missing_artifact_is_logged_as_refused(service: AgentService, caplog_agent) -> None:
    events = list(service.Benchmark(pb.BenchmarkSpec(job_id="j1", artifact_sha256=SHA), None))
    assert events[-1].failure.kind == pb.Failure.BAD_INPUT
    assert records(caplog_agent, "edgefarm.agent.server") == [
        (logging.WARNING, f"refused job j1: artifact(s) {SHA[:12]} not on this agent")]


def test_a_crashing_worker_is_logged(caplog_agent) -> None:
    events = list(run_in_worker(pb.BenchmarkSpec(job_id="j2"), "unused", None, timeout_s=30, command=CRASHING_CHILD))
    assert events[-1].failure.kind == pb.Failure.BACKEND_CRASH
    [(level, message)] = records(caplog_agent, "edgefarm.agent.worker")
    assert level == logging.WARNING
    assert message.startswith("job j2 failed (BACKEND_CRASH, worker pid ")
    assert message.endswith("worker killed by signal SIGSEGV")


def test_a_worker_past_its_timeout_is_logged(caplog_agent) -> None:
    events = list(run_in_worker(pb.BenchmarkSpec(job_id="j3"), "unused", None, timeout_s=0.1, command=HANGING_CHILD))
    assert events[-1].failure.kind == pb.Failure.TIMEOUT
    [(level, message)] = records(caplog_agent, "edgefarm.agent.worker")
    assert level == logging.WARNING
    assert message.startswith("job j3 failed (TIMEOUT, worker pid ")
    assert message.endswith("job exceeded its 0.1 s timeout; worker killed")


@pytest.mark.parametrize(("journal_stream", "expected"), [
    (None, "%(asctime)s %(levelname)s %(name)s: %(message)s"),
    ("8:123456", "%(levelname)s %(name)s: %(message)s"),
])
def test_serve_logs_without_a_timestamp_under_journald(monkeypatch: pytest.MonkeyPatch, journal_stream: str | None,
                                                       expected: str) -> None:
    if journal_stream is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream)
    calls: list[dict] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: calls.append(kwargs))
    cli.configure_logging("WARNING")
    assert calls == [{"level": "WARNING", "format": expected, "stream": sys.stderr}]


def test_log_level_flag_defaults_to_info_and_ignores_case() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["serve"]).log_level == "INFO"
    assert parser.parse_args(["serve", "--log-level", "debug"]).log_level == "DEBUG"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--log-level", "chatty"])
