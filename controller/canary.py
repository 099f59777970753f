"""The health check a quarantined board must pass: Describe, then a canary model whose
right answer is known (top-1 must be exactly 1.0), run through the board's own engine."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from controller.client import AgentRejectedError, AgentUnreachableError, AsyncAgentClient, sha256_file
from protos import agent_pb2 as pb

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


async def health_check(name: str, address: str) -> tuple[bool, str]:
    client = AsyncAgentClient(name, address)
    try:
        await client.connect()
        accuracy = await _canary_accuracy(client)
    except (AgentUnreachableError, AgentRejectedError) as exc:
        return False, str(exc)
    finally:
        await client.close()
    if accuracy != 1.0:
        return False, f"canary top-1 {accuracy} != 1.0: the board computes wrong results"
    return True, "ok"


async def _canary_accuracy(client: AsyncAgentClient) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        model, data = write_canary(Path(tmp))
        model_sha, data_sha = sha256_file(model), sha256_file(data)
        await client.ensure_uploaded(model, model_sha)
        await client.ensure_uploaded(data, data_sha)
    spec = pb.BenchmarkSpec(job_id="canary", artifact_sha256=model_sha, backend="onnxruntime",
                            eval_artifact_sha256=data_sha, timeout_seconds=60,
                            warmup=pb.WarmupPolicy(min_iterations=1, min_seconds=0.01),
                            measure=pb.MeasurePolicy(min_iterations=5, min_seconds=0.01))
    async for event in client.benchmark(spec):
        if event.HasField("result"):
            return event.result.accuracy
        if event.HasField("failure"):
            raise AgentRejectedError(f"canary failed: {event.failure.message}")
    raise AgentUnreachableError("canary: the agent closed the stream without a result")
