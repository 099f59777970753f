"""ExecuTorch and OpenVINO end to end: et-*/ov-* recipes made and scored on the controller, measured by a real
local agent with per-layer tables, routes chosen by format or by --backend, and bad input in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgefarm
from benchmarks.models import mlp_model
from edgefarm.compressors.errors import BadModelError
from edgefarm.compressors.models import bundle_from_file, get_model
from edgefarm.compressors.recipes import compress
from edgefarm.controller.results.store import ResultStore
from tests.test_cli import FAST
from tests.test_cli import edgefarm as edgefarm_cli

pytest.importorskip("executorch.runtime", reason="executorch is not installed (pip install 'edgefarm[executorch]')")
pytest.importorskip("openvino", reason="openvino is not installed (pip install 'edgefarm[openvino]')")
pytest.importorskip("nncf", reason="nncf is not installed (pip install 'edgefarm[runtime-recipes]')")

QUICK = edgefarm.Measure(warmup_seconds=0.05, min_seconds=0.2, profile=True)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory, model_cache: Path):
    db = tmp_path_factory.mktemp("runtimes") / "results.sqlite"
    run = edgefarm.Farm.local(db=db, cache_dir=model_cache).run(
        "digits-cnn", recipes=["fp32", "et-fp32", "et-int8", "ov-int8"], measure=QUICK, progress=False)
    store = ResultStore(db)
    try:
        stored = {s.job.variant: s.result for s in store.results(run.id)}
    finally:
        store.close()
    return run, stored


def test_each_runtime_variant_is_measured_on_its_own_backend(measured) -> None:
    run, stored = measured
    assert run.exit_code == 0, run.failures
    assert {variant: result.backend for variant, result in stored.items()} == {
        "fp32": "onnxruntime", "et-fp32": "executorch", "et-int8": "executorch", "ov-int8": "openvino"}
    assert stored["et-int8"].provider.startswith("xnnpack (")
    assert stored["ov-int8"].provider == "CPU (f32, LATENCY)"


def test_accuracy_is_measured_like_every_other_variant(measured) -> None:
    frame = measured[0].frame.set_index("variant")
    fp32 = frame.loc["fp32", "accuracy"]
    for variant in ("et-fp32", "et-int8", "ov-int8"):
        assert abs(frame.loc[variant, "accuracy"] - fp32) <= 0.02, variant       # on the controller
        assert abs(frame.loc[variant, "device_accuracy"] - fp32) <= 0.02, variant  # on the board
    assert frame.loc["et-int8", "size_bytes"] < frame.loc["et-fp32", "size_bytes"] / 2


def test_per_layer_tables_come_from_etdump_and_perf_count(measured) -> None:
    stored = measured[1]
    et, ov = stored["et-int8"].layer_profile, stored["ov-int8"].layer_profile
    assert et.available and et.profiler.startswith("executorch ETDump")
    assert any(row.placement == "XNNPACK" and row.precision == "int8" and row.timed for row in et.layers)
    assert ov.available and ov.profiler.startswith("openvino PERF_COUNT")
    convs = [row for row in ov.layers if row.op_family == "Conv"]
    assert convs and all(row.precision == "int8" for row in convs)   # exec_type says the int8 kernels ran
    assert all(row.source_nodes for row in convs)


def test_recipes_record_what_they_made(model_cache: Path) -> None:
    bundle = get_model("digits-cnn", model_cache)
    details = json.loads((compress(bundle, "et-int8", model_cache).path.parent / "details.json").read_text())
    assert details["recipe"] == "et-int8" and details["delegated_partitions"] >= 1
    fp16, fp32 = compress(bundle, "ov-fp16", model_cache), compress(bundle, "fp32", model_cache)
    assert fp16.path.suffix == ".ovir" and fp16.size_bytes < 0.6 * fp32.size_bytes
    assert abs(fp16.accuracy - fp32.accuracy) <= 0.01


def test_et_recipes_need_the_pytorch_source(tmp_path: Path, model_cache: Path) -> None:
    bundle = bundle_from_file(mlp_model(tmp_path / "mlp.onnx"))
    with pytest.raises(BadModelError, match="recipe et-fp32 exports from PyTorch, but mlp has no PyTorch source"):
        compress(bundle, "et-fp32", model_cache)


def test_a_users_module_goes_to_executorch_through_its_saved_program(tmp_path: Path, model_cache: Path) -> None:
    import torch

    from edgefarm.compressors.models.torch_builders import digits_cnn
    from edgefarm.compressors.models.torch_module import bundle_from_torch

    digits = get_model("digits-cnn", model_cache)
    module = digits_cnn()
    module.load_state_dict(torch.load(digits.torch_source.state_dict, weights_only=True))
    bundle = bundle_from_torch(module, torch.zeros(1, 1, 8, 8), "my-cnn", tmp_path, digits.calib_npz, digits.eval_npz)
    assert bundle.exported_program is not None and bundle.torch_source is None
    fp32, et_int8 = compress(bundle, "fp32", tmp_path), compress(bundle, "et-int8", tmp_path)
    assert et_int8.path.suffix == ".pte" and abs(et_int8.accuracy - fp32.accuracy) <= 0.02


def test_a_chain_can_end_in_an_executorch_program(model_cache: Path) -> None:
    variant = compress(get_model("digits-cnn", model_cache), "structured-prune(0.25) -> et-fp32", model_cache)
    assert variant.path.suffix == ".pte" and variant.stats["params_after"] < variant.stats["params_before"]


def test_backend_flag_runs_onnx_on_openvino(tmp_path: Path, model_cache: Path) -> None:
    run = edgefarm.Farm.local(db=tmp_path / "r.sqlite", cache_dir=model_cache).run(
        mlp_model(tmp_path / "mlp.onnx"), backend="openvino", measure=QUICK, progress=False)
    assert run.exit_code == 0 and list(run.frame["backend"]) == ["openvino"]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "fake.pte").write_bytes(b"PK\x03\x04 this is a zip")
    (tmp_path / "lonely.xml").write_text("<net/>")
    return {
        "not a .pte": ([str(tmp_path / "fake.pte")], "fake.pte is not an ExecuTorch program"),
        "IR without its .bin": ([str(tmp_path / "lonely.xml")], "lonely.bin is not beside it"),
        "backend that cannot run the format": (["digits-cnn", "--recipe", "et-fp32", "--backend", "openvino"],
                                               "backend openvino does not run .pte files"),
        "unknown backend": (["digits-cnn", "--backend", "coreml"], "unknown backend 'coreml'; valid backends:"),
    }


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, model_cache: Path) -> None:
    for case, (args, needle) in _bad_inputs(tmp_path).items():
        proc = edgefarm_cli("run", *args, "--local", "--db", str(tmp_path / "r.sqlite"),
                            "--cache-dir", str(model_cache), *FAST)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("edgefarm: error:")]
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], f"{case}: {proc.stderr}"


def test_prebuilt_programs_and_irs_run_as_they_are(tmp_path: Path, model_cache: Path) -> None:
    import openvino as ov

    model = mlp_model(tmp_path / "mlp.onnx")
    ov.save_model(ov.convert_model(str(model)), str(tmp_path / "mlp.xml"))   # mlp.xml + mlp.bin
    program = compress(get_model("digits-cnn", model_cache), "et-fp32", model_cache).path
    farm = edgefarm.Farm.local(db=tmp_path / "r.sqlite", cache_dir=model_cache)
    for path, backend in ((tmp_path / "mlp.xml", "openvino"), (program, "executorch")):
        run = farm.run(path, measure=QUICK, progress=False)
        assert run.exit_code == 0, run.failures
        assert list(run.frame["variant"]) == ["as-is"] and list(run.frame["backend"]) == [backend]
