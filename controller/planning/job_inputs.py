"""What every job of one model ships beside its artifact: exact input shapes, the user's input data,
and the fidelity set; and the check that the agent is new enough to honour them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from edgefarm.agent.digest import sha256_file
from edgefarm.controller.agents.client import AgentRejectedError
from edgefarm.controller.execution.fidelity import FidelitySet
from edgefarm.controller.planning.input_plan import InputPlan

# edgefarm.v1.1 added input shapes, input data and fidelity to BenchmarkSpec; an older agent would
# silently drop them and measure at shapes of its own choosing.
SHAPES_SINCE_MINOR = 1
# Formats our recipes make from an ONNX model with its input names, layout and outputs (et-*, ov-*).
SAME_INTERFACE = (".ovir", ".pte")
PROFILE_SINCE_MINOR = 2      # edgefarm.v1.2: JobSpec.profile and Result.layer_profile
_PROTOCOL = re.compile(r"^edgefarm\.v1(?:\.(\d+))?$")


class AgentVersions(Protocol):
    """What Describe says of the agent's versions (a DeviceInfo message satisfies it)."""

    protocol_version: str
    agent_version: str


class AgentTooOldError(AgentRejectedError):
    """The agent speaks an older protocol that would ignore part of the job."""


@dataclass(frozen=True)
class JobInputs:
    """plan None: the model's own static shapes (or the agent resolves them: a .tflite with no LiteRT here)."""

    plan: InputPlan | None = None
    model_suffix: str = ".onnx"
    fidelity: FidelitySet | None = None

    @cached_property  # hashed once per run, not once per job
    def inputs_sha(self) -> str:
        return sha256_file(self.plan.inputs_npz) if self.plan and self.plan.inputs_npz else ""

    def files(self) -> list[tuple[Path, str]]:
        """(path, sha256) of each file the jobs need on the board."""
        files = [(self.plan.inputs_npz, self.inputs_sha)] if self.plan and self.plan.inputs_npz else []
        return files + ([(self.fidelity.path, self.fidelity.sha256)] if self.fidelity else [])

    def for_artifact(self, artifact: Path) -> JobInputs:
        """A variant in another format (a .tflite made from an ONNX model) has its own input names and
        layout: it runs at its own static shapes and is scored on the board only if the names match.
        An OpenVINO IR or an ExecuTorch program made from the same model keeps its names and layout."""
        if artifact.suffix == self.model_suffix or (self.model_suffix == ".onnx" and artifact.suffix in SAME_INTERFACE):
            return self
        batch = self.plan.batch_size if self.plan else 1
        return JobInputs(InputPlan((), batch) if self.plan else None, artifact.suffix)

    def needs_v1_1(self) -> bool:
        return bool(self.plan and (self.plan.inputs_npz or self.plan.pinned))


def protocol_minor(version: str) -> int | None:
    """edgefarm.v1 -> 0, edgefarm.v1.1 -> 1; None for another major (or garbage)."""
    match = _PROTOCOL.match(version)
    return None if match is None else int(match.group(1) or 0)


def require_protocol(device: str, info: AgentVersions | None, inputs: JobInputs, profile: bool = False) -> None:
    """Refuse, rather than let an old agent ignore the shapes, data or profiling the job depends on."""
    wanted = [(since, what) for since, what, needed in (
        (SHAPES_SINCE_MINOR, "input shapes and input data", inputs.needs_v1_1()),
        (PROFILE_SINCE_MINOR, "--profile (per-layer profiles)", profile)) if needed]
    if info is None or not wanted:
        return
    minor = protocol_minor(info.protocol_version)
    ignored = [what for since, what in wanted if minor is None or minor < since]
    if ignored:
        raise AgentTooOldError(
            f"the agent on {device} speaks {info.protocol_version or 'an unknown protocol'} (agent "
            f"{info.agent_version or '?'}), which ignores {' and '.join(ignored)}; upgrade it: "
            f"edgefarm provision {device} --upgrade")
