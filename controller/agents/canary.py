"""The health check a quarantined board must pass: Describe, then a canary model whose
right answer is known (top-1 must be exactly 1.0), run through the board's own engine."""
from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path

import numpy as np

from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentRejectedError, AgentUnreachableError, AsyncAgentClient
from edgefarm.controller.agents.records import BenchmarkResult, Failure, JobSpec
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.planning.backends import NoBackendError, choose_backend

CLASSES = 10


def write_canary(folder: Path) -> tuple[Path, Path]:
    """An identity classifier (MatMul by I) and inputs whose argmax is the label."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.eye(CLASSES, dtype=np.float32), "identity")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "identity"], ["logits"])], "canary",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", CLASSES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, folder / "canary.onnx")
    x = np.random.default_rng(7).random((64, CLASSES), dtype=np.float32)
    np.savez(folder / "canary-eval.npz", x=x, y=np.argmax(x, axis=1).astype(np.int64))
    return folder / "canary.onnx", folder / "canary-eval.npz"


CANARY_TFLITE = Path(__file__).with_name("canary.tflite")   # the same identity classifier, for LiteRT-only boards


async def health_check(device: Device) -> tuple[bool, str]:
    """Describe, then the canary through a backend this board has (a Coral/Pi board may have only LiteRT)."""
    try:
        fmt, backend = canary_backend(device.backends)
    except NoBackendError as exc:
        return False, f"no canary runs on {device.name}: {exc}"
    try:
        client = AsyncAgentClient.for_device(device)
    except Exception as exc:  # no TLS material for the board, a malformed address: a check that cannot start fails
        return False, f"cannot dial {device.name} at {device.address}: {exc}"
    try:
        await client.connect()
        accuracy = await _canary_accuracy(client, fmt, backend)
    except (AgentUnreachableError, AgentRejectedError) as exc:
        return False, str(exc)
    finally:
        await client.close()
    if accuracy != 1.0:
        return False, f"canary top-1 {accuracy} on {backend} != 1.0: the board computes wrong results"
    return True, "ok"


def canary_backend(backends: Collection[str]) -> tuple[str, str]:
    """(artifact format, backend) of the canary for a board: ONNX where it runs, else the .tflite twin."""
    try:
        return ".onnx", choose_backend(backends, ".onnx")
    except NoBackendError:
        return ".tflite", choose_backend(backends, ".tflite")


async def _canary_accuracy(client: AsyncAgentClient, fmt: str, backend: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        model, data = write_canary(Path(tmp))
        if fmt == ".tflite":
            model = CANARY_TFLITE
        model_sha, data_sha = sha256_file(model), sha256_file(data)
        await client.ensure_uploaded(model, model_sha)
        await client.ensure_uploaded(data, data_sha)
    spec = JobSpec(job_id="canary", artifact_sha256=model_sha, backend=backend, eval_artifact_sha256=data_sha,
                   timeout_seconds=60, warmup_iterations=1, warmup_seconds=0.01, min_iterations=5,
                   min_seconds=0.01, max_iterations=1000, max_seconds=5)
    async for event in client.benchmark(spec):
        if isinstance(event, BenchmarkResult):
            return event.accuracy
        if isinstance(event, Failure):
            raise AgentRejectedError(f"canary failed on {backend}: {event.message}")
    raise AgentUnreachableError("canary: the agent closed the stream without a result")
