"""The ExecuTorch backend against the real executorch runtime: .pte programs, placement, ETDump, bad input.

Programs are exported here from tiny PyTorch modules (a few seconds each, once per module). The
torch-free executorch-numpy-runtime needs Python >= 3.12: its path is tested where it installs.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgefarm.agent.backends.base import BackendOptions, BackendUnavailableError, BadInputError
from edgefarm.agent.profiling import ProfileSettings, run_profile
from edgefarm.agent.profiling.executorch import etdump_profile, placement_profile
from edgefarm.agent.pte_program import placement_summary, read_methods

torch = pytest.importorskip("torch")
pytest.importorskip("executorch.runtime", reason="executorch is not installed (pip install 'edgefarm[executorch]')")
from edgefarm.agent.backends import executorch as et_backend  # noqa: E402

SHAPE = (1, 3, 16, 16)


class Net(torch.nn.Module):
    """Conv -> ReLU -> mean -> Linear; with cumsum, an op the XNNPACK partitioner cannot take."""

    def __init__(self, cumsum: bool = False) -> None:
        super().__init__()
        self.conv, self.fc, self.cumsum = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 4), cumsum

    def forward(self, x):
        out = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        return torch.cumsum(out, 1) if self.cumsum else out


def export_pte(module: torch.nn.Module, path: Path) -> Path:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export/executorch API notices, not about the model
        program = torch.export.export(module.eval(), (torch.zeros(SHAPE),))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(lowered.buffer)
    return path


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    folder = tmp_path_factory.mktemp("pte")
    torch.manual_seed(0)
    nets = {"plain": Net(), "cumsum": Net(cumsum=True)}
    return {name: (net, export_pte(net, folder / f"{name}.pte")) for name, net in nets.items()}


def _x() -> np.ndarray:
    return np.random.default_rng(0).random(SHAPE, dtype=np.float32)


def test_version_is_reported_without_importing_torch() -> None:
    import subprocess

    probe = ("import sys; from edgefarm.agent.backends import executorch as et; "
             "print(et.version(), et.providers(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("executorch 1.") and out.strip().endswith("[] False")


def test_a_program_runs_and_matches_pytorch(programs) -> None:
    net, path = programs["plain"]
    engine = et_backend.load(str(path), BackendOptions(threads=1))
    assert [(s.name, list(s.shape), s.dtype) for s in engine.inputs] == [("input", list(SHAPE), "float32")]
    out = engine.run({"input": _x()})[0]
    np.testing.assert_allclose(out, net(torch.from_numpy(_x())).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert engine.provider == "xnnpack (2 partitions) + cpu kernels (aten::mean.out)"
    engine.close()


def test_an_op_xnnpack_cannot_take_runs_on_the_cpu_kernels_and_says_so(programs) -> None:
    net, path = programs["cumsum"]
    engine = et_backend.load(str(path), BackendOptions())
    out = engine.run({"input": _x()})[0]
    np.testing.assert_allclose(out, net(torch.from_numpy(_x())).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert "cpu kernels (aten::cumsum.out" in engine.provider and engine.provider.startswith("xnnpack")


def test_the_program_reader_lists_partitions_and_cpu_kernel_ops(programs) -> None:
    (method,) = read_methods(programs["cumsum"][1].read_bytes())
    assert method.name == "forward"
    assert [step.kind for step in method.steps] == ["delegate", "kernel", "delegate", "kernel"]
    assert placement_summary(method) == "XnnpackBackend: 2 partitions; CPU kernels: aten::mean.out, aten::cumsum.out"


def test_the_thread_count_is_set_on_xnnpacks_pool(programs) -> None:
    from executorch.extension.pybindings import portable_lib

    et_backend.load(str(programs["plain"][1]), BackendOptions(threads=2)).close()
    assert portable_lib._threadpool_get_thread_count() == 2


@pytest.mark.parametrize(("content", "message"), [
    (b"\x08\x00\x00\x00ONNX" + bytes(32), r"is not an ExecuTorch program \(\.pte\): no ExecuTorch file identifier"),
    (b"\x18\x00\x00\x00TFL3" + bytes(32), r"is not an ExecuTorch program \(\.pte\)"),
    (b"\x18\x00\x00\x00ET12" + bytes(4),
     r"is not an ExecuTorch program \(\.pte\): the program's FlatBuffer is damaged"),
])
def test_a_file_that_is_no_executorch_program_is_refused_in_one_line(tmp_path: Path, content: bytes,
                                                                      message: str) -> None:
    path = tmp_path / "artifact"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as caught:
        et_backend.load(str(path), BackendOptions())
    assert "\n" not in str(caught.value)


def test_a_truncated_program_is_refused_by_the_runtime(programs, tmp_path: Path) -> None:
    data = programs["plain"][1].read_bytes()
    path = tmp_path / "truncated.pte"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cannot load the program|is not an ExecuTorch program"):
        et_backend.load(str(path), BackendOptions())


@pytest.mark.parametrize(("options", "message"), [
    (BackendOptions(precision="int8"), "precision: not settings of the 'executorch' backend"),
    (BackendOptions(delegate="xnnpack", execution_provider="CPU"), "execution_provider, delegate: not settings"),
    (BackendOptions(threads=-1), "threads must be >= 0"),
])
def test_settings_the_program_fixed_at_export_are_refused(programs, options: BackendOptions, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        et_backend.load(str(programs["plain"][1]), options)


def test_etdump_profile_times_xnnpack_ops_inside_partitions_and_cpu_kernel_ops(programs) -> None:
    path = programs["cumsum"][1]
    engine = et_backend.load(str(path), BackendOptions(threads=1))
    found = run_profile("executorch", engine, str(path), BackendOptions(threads=1), {"input": _x()},
                        ProfileSettings(iterations=10, dropped=2))
    assert found.available and found.profiler.startswith("executorch ETDump") and found.iterations == 10
    placements = {row.placement for row in found.layers}
    assert placements == {"XNNPACK", "CPU kernels"}
    kernels = [row.op_type for row in found.layers if row.placement == "CPU kernels"]
    assert kernels == ["aten::mean.out", "aten::cumsum.out"]
    conv = [row for row in found.layers if row.op_family == "Conv"]
    assert conv and conv[0].name.startswith("partition 1: Convolution") and conv[0].precision == "fp32"
    assert all(row.timed for row in found.layers) and found.profiled_median_us > 0


def test_a_build_without_inner_delegate_events_shows_each_partition_as_one_row() -> None:
    events = [("DELEGATE_CALL", False, [5.0, 4.0, 4.0]), ("native_call_mean.out", False, [1.0, 1.0, 1.0]),
              ("OPERATOR_CALL", False, [1.2, 1.1, 1.1]), ("Method::execute", False, [7.0, 6.0, 6.0])]
    found = etdump_profile(events, ProfileSettings(iterations=2, dropped=1))
    assert [(row.name, row.placement, row.median_us) for row in found.layers] == [
        ("partition 1", "XNNPACK", 4.0), ("native_call_mean.out", "CPU kernels", 1.0)]
    assert "each delegated partition is one row" in found.notes and found.profiled_median_us == 6.0


def test_without_etdump_the_profile_is_the_programs_placement_untimed(programs) -> None:
    method = et_backend.program_placement(str(programs["cumsum"][1]))
    found = placement_profile(method, "per-op time not available: no ETDump")
    assert [(row.name, row.placement) for row in found.layers] == [
        ("partition 1", "XNNPACK"), ("aten::mean.out:1", "CPU kernels"), ("partition 2", "XNNPACK"),
        ("aten::cumsum.out:3", "CPU kernels")]
    assert not any(row.timed for row in found.layers)
    assert found.timing_unavailable_reason.startswith("per-op time not available")


def test_python_38_boards_are_told_why_there_is_no_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "version_info", (3, 8, 18, "final", 0))
    assert et_backend.missing_reason().startswith("no ExecuTorch Python runtime exists for Python 3.8")


def test_no_runtime_is_unavailable_not_a_crash(programs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(et_backend, "_runtime", lambda: None)
    monkeypatch.setattr(et_backend, "_installed", lambda: None)
    assert et_backend.version() is None and et_backend.providers() == []
    with pytest.raises(BackendUnavailableError, match="no ExecuTorch runtime on this board"):
        et_backend.load(str(programs["plain"][1]), BackendOptions())


def test_describe_says_which_runtimes_are_missing_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefarm.agent import describe

    monkeypatch.setattr(et_backend, "_installed", lambda: None)
    monkeypatch.setattr(sys, "version_info", (3, 8, 18, "final", 0))
    info = describe.describe()
    missing = {m.name: m.reason for m in info.missing_runtimes}
    assert "executorch" not in {r.name for r in info.runtimes} and "simulated" not in missing
    assert missing["executorch"].startswith("no ExecuTorch Python runtime exists for Python 3.8")
