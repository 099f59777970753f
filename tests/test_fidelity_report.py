"""What a result says about its inputs and fidelity, and the refusal of agents too old to honour them
(plain data: stored results and Describe replies as the store and the client hold them)."""
from __future__ import annotations

import math

import pytest

from edgefarm.controller.agents.client import AgentRejectedError
from edgefarm.controller.agents.records import DeviceInfo
from edgefarm.controller.agents.wire import result_from_pb
from edgefarm.controller.execution.fidelity import device_below_host
from edgefarm.controller.planning.input_plan import InputPlan
from edgefarm.controller.planning.job_inputs import AgentTooOldError, JobInputs, protocol_minor, require_protocol
from edgefarm.controller.reports import write_html
from edgefarm.controller.results.frame import result_row
from edgefarm.controller.results.store import JobRecord, StoredResult, VariantRecord
from edgefarm.protos import agent_pb2 as pb

HOST = {"fidelity_cosine": 0.9990, "fidelity_snr_db": 31.0, "top1_agreement": 0.98}


def _stored(result: pb.Result, stats: dict | None = None) -> StoredResult:
    """The result as the board sent it, turned into the record the store keeps."""
    job = JobRecord("j", "r", "detector", "int8-static", "orin-01", "tensorrt", "a" * 64)
    variant = VariantRecord("detector", "int8-static", {}, "a" * 64, 1000, None, 1.0, stats or {})
    return StoredResult(job, variant, result_from_pb(result), 1_700_000_000.0)


def _result(device_cosine: float, device_top1: float) -> pb.Result:
    result = pb.Result(input_source="inputs:" + "b" * 64, input_samples=16)
    result.latency.p50_ms = 9.0
    result.input_shapes.add(name="images", dims=[1, 3, 640, 640])
    result.fidelity.add(name="scores", cosine=device_cosine, snr_db=25.0, classifier=True,
                        top1_agreement=device_top1, samples=16)
    result.fidelity.add(name="boxes", cosine=0.99999, snr_db=60.0, samples=16)
    return result


def test_a_row_records_shapes_data_and_both_fidelities():
    row = result_row(_stored(_result(0.9985, 0.975), HOST))
    assert row["input_shapes"] == "images:1x3x640x640" and row["synthetic_inputs"] is False
    assert row["fidelity_cosine"] == 0.9990 and row["top1_agreement"] == 0.98
    # The worst output stands for the variant: scores, not boxes.
    assert row["device_fidelity_cosine"] == 0.9985 and row["device_fidelity_snr_db"] == 25.0
    assert row["device_top1_agreement"] == 0.975 and row["fidelity_flag"] == ""


def test_a_board_clearly_below_the_host_is_flagged():
    assert result_row(_stored(_result(0.95, 0.975), HOST))["fidelity_flag"] == "device below host"
    assert result_row(_stored(_result(0.999, 0.90), HOST))["fidelity_flag"] == "device below host"
    assert not device_below_host(HOST, {"device_fidelity_cosine": math.nan})


def test_a_result_from_an_older_agent_says_not_recorded_rather_than_synthetic():
    row = result_row(_stored(pb.Result()))
    assert row["input_shapes"] == "not recorded" and row["synthetic_inputs"] == "not recorded"
    assert math.isnan(row["device_fidelity_cosine"]) and math.isnan(row["fidelity_cosine"])


def test_a_board_that_could_not_compare_says_why():
    result = _result(1.0, 1.0)
    result.ClearField("fidelity")
    result.fidelity_unavailable_reason = "the model has 3 outputs, the reference 2"
    assert result_row(_stored(result, HOST))["fidelity_flag"] == \
        "not available on the device: the model has 3 outputs, the reference 2"


def test_the_html_report_shows_the_new_columns(tmp_path):
    import pandas as pd

    frame = pd.DataFrame([result_row(_stored(_result(0.95, 0.975), HOST))])
    html = write_html(frame, tmp_path / "report.html", "fidelity").read_text()
    for header in ("input shapes", "synthetic inputs", "fidelity cosine", "device fidelity cosine", "fidelity flag"):
        assert header in html
    assert "images:1x3x640x640" in html and "device below host" in html and "0.950000" in html
    assert "Measured at: <code>detector</code> at <code>images:1x3x640x640</code>, the user's inputs" in html


@pytest.mark.parametrize(("version", "minor"), [("edgefarm.v1", 0), ("edgefarm.v1.1", 1), ("edgefarm.v1.7", 7),
                                                 ("edgefarm.v2", None), ("", None)])
def test_protocol_minor(version, minor):
    assert protocol_minor(version) == minor


def test_an_agent_too_old_for_shapes_is_refused_with_the_upgrade_command():
    old = DeviceInfo(protocol_version="edgefarm.v1", agent_version="0.0.9")
    pinned = JobInputs(InputPlan((("images", (1, 3, 640, 640)),), 1, pinned=True))
    with pytest.raises(AgentTooOldError) as refused:
        require_protocol("jetson-orin-01", old, pinned)
    assert str(refused.value) == ("the agent on jetson-orin-01 speaks edgefarm.v1 (agent 0.0.9), which ignores input "
                                  "shapes and input data; upgrade it: edgefarm provision jetson-orin-01 --upgrade")
    assert isinstance(refused.value, AgentRejectedError)  # exit 2 on the CLI, not retried on the farm


def test_an_old_agent_still_runs_a_model_whose_only_dynamic_dim_is_the_batch():
    old = DeviceInfo(protocol_version="edgefarm.v1")
    require_protocol("rpi5-01", old, JobInputs(InputPlan((("x", (1, 1, 8, 8)),), 1, pinned=False)))
    require_protocol("rpi5-01", DeviceInfo(protocol_version="edgefarm.v1.1"),
                     JobInputs(InputPlan((("images", (1, 3, 64, 64)),), 1, pinned=True)))


def test_an_agent_too_old_to_profile_is_refused_rather_than_silently_ignoring_profile():
    """Before: a v1.1 agent dropped the unknown JobSpec.profile field and the result had no layer table."""
    v1_1 = DeviceInfo(protocol_version="edgefarm.v1.1", agent_version="0.1.0")
    unpinned = JobInputs(InputPlan((("x", (1, 1, 8, 8)),), 1, pinned=False))
    require_protocol("rpi5-01", v1_1, unpinned)                       # no profile asked: fine
    with pytest.raises(AgentTooOldError, match="which ignores --profile \\(per-layer profiles\\); upgrade it"):
        require_protocol("rpi5-01", v1_1, unpinned, profile=True)
    require_protocol("rpi5-01", DeviceInfo(protocol_version="edgefarm.v1.2"), unpinned, profile=True)
