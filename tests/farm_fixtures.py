"""Several real agents on loopback, and the devices file that names them."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from edgefarm.controller.agents.local_agent import LocalAgent


@contextmanager
def local_agents(root: Path, count: int) -> Iterator[list[LocalAgent]]:
    """Each agent (and the workers it spawns, which inherit it) pinned to its own core where there are
    enough: "boards" sharing cores time each other's jobs, and A/A nights then drift by 20 %."""
    cores = sorted(os.sched_getaffinity(0))
    with ExitStack() as stack:
        agents = [stack.enter_context(LocalAgent(root / f"agent-{i}")) for i in range(count)]
        if len(cores) >= count:
            for agent, core in zip(agents, cores, strict=False):
                os.sched_setaffinity(agent.pid, {core})
        yield agents


def devices_yaml(path: Path, agents: list[LocalAgent], names: list[str]) -> Path:
    lines = ["devices:"]
    for name, agent in zip(names, agents, strict=True):
        host, port = agent.address.rsplit(":", 1)
        lines += [f"  - name: {name}", f"    host: {host}", f"    port: {port}", "    tags: {role: bench}",
                  "    backends: [onnxruntime]", "    backend_options: {onnxruntime: {threads: 1}}"]
    lines += ["pools:", "  bench: {role: bench}"]
    path.write_text("\n".join(lines) + "\n")
    return path
