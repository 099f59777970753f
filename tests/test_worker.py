"""Worker isolation with real child processes: a crash and a hang never take the parent down."""
import sys

import pytest

from benchmarks.models import mlp_model
from edgefarm.agent.worker import run_in_worker
from edgefarm.protos import agent_pb2 as pb

CRASHING_CHILD = (sys.executable, "-c",
                  "import os, signal, sys; sys.stdin.buffer.read(); os.kill(os.getpid(), signal.SIGSEGV)")
HANGING_CHILD = (sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(); time.sleep(600)")
FAILING_CHILD = (sys.executable, "-c", "import sys; sys.stdin.buffer.read(); sys.exit('runtime aborted: boom')")


def _spec(backend: str = "onnxruntime") -> pb.BenchmarkSpec:
    return pb.BenchmarkSpec(job_id="t", backend=backend,
                            warmup=pb.WarmupPolicy(min_iterations=2, min_seconds=0.01),
                            measure=pb.MeasurePolicy(min_iterations=20, min_seconds=0.05))


def _final(events) -> pb.BenchmarkEvent:
    events = list(events)
    finals = [e for e in events if e.WhichOneof("event") in ("result", "failure")]
    assert len(finals) == 1 and events[-1] is finals[0]
    return finals[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(mlp_model(tmp_path_factory.mktemp("m") / "mlp.onnx"))


def test_a_normal_job_yields_one_result(model):
    final = _final(run_in_worker(_spec(), model, None, timeout_s=60))
    assert final.result.latency.count >= 20
    assert final.result.provider == "CPUExecutionProvider"


def test_segfaulting_child_is_a_backend_crash_naming_the_signal(model):
    final = _final(run_in_worker(_spec(), model, None, timeout_s=30, command=CRASHING_CHILD))
    assert final.failure.kind == pb.Failure.BACKEND_CRASH
    assert "SIGSEGV" in final.failure.message
    # the parent survived: the next job on the same code path runs normally
    assert _final(run_in_worker(_spec(), model, None, timeout_s=60)).HasField("result")


def test_child_that_exits_early_reports_its_stderr(model):
    final = _final(run_in_worker(_spec(), model, None, timeout_s=30, command=FAILING_CHILD))
    assert final.failure.kind == pb.Failure.BACKEND_CRASH
    assert "exited with code 1" in final.failure.message and "runtime aborted: boom" in final.failure.message


def test_hanging_child_is_killed_at_the_timeout(model):
    final = _final(run_in_worker(_spec(), model, None, timeout_s=1.0, command=HANGING_CHILD))
    assert final.failure.kind == pb.Failure.TIMEOUT
    assert "1 s timeout" in final.failure.message
    assert _final(run_in_worker(_spec(), model, None, timeout_s=60)).HasField("result")


def test_not_a_model_is_bad_input(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model")
    final = _final(run_in_worker(_spec(), str(junk), None, timeout_s=60))
    assert final.failure.kind == pb.Failure.BAD_INPUT
    assert "cannot load the model" in final.failure.message


def test_unknown_backend_is_bad_input_listing_valid_ones(model):
    final = _final(run_in_worker(_spec(backend="nope"), model, None, timeout_s=60))
    assert final.failure.kind == pb.Failure.BAD_INPUT
    assert "valid backends: " in final.failure.message
