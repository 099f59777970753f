"""Several real agents on loopback, and the devices file that names them."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from edgefarm.controller.agents.local_agent import LocalAgent


@contextmanager
def local_agents(root: Path, count: int) -> Iterator[list[LocalAgent]]:
    with ExitStack() as stack:
        yield [stack.enter_context(LocalAgent(root / f"agent-{i}")) for i in range(count)]


def devices_yaml(path: Path, agents: list[LocalAgent], names: list[str]) -> Path:
    lines = ["devices:"]
    for name, agent in zip(names, agents, strict=True):
        host, port = agent.address.rsplit(":", 1)
        lines += [f"  - name: {name}", f"    host: {host}", f"    port: {port}", "    tags: {role: bench}",
                  "    backends: [onnxruntime]", "    backend_options: {onnxruntime: {threads: 1}}"]
    lines += ["pools:", "  bench: {role: bench}"]
    path.write_text("\n".join(lines) + "\n")
    return path
