"""Regression verdicts and their JUnit XML, on plain synthetic runs (no agent, no board)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import mannwhitneyu

from edgefarm.controller.agents.wire import result_from_pb
from edgefarm.controller.nightly.junit import junit_xml, write_junit
from edgefarm.controller.nightly.regression import (
    BenchmarkKey,
    Outcome,
    RegressionPolicy,
    Sample,
    Unmeasured,
    compare,
    confirm,
    differing_fields,
    exit_code,
    fingerprint_of,
    night_exit_code,
)
from edgefarm.controller.nightly.run import night_verdict
from edgefarm.controller.results.stability import instability
from edgefarm.protos import agent_pb2 as pb

KEY = BenchmarkKey("mlp", "int8", "pi5-01", "onnxruntime")
FINGERPRINT = {"cpu_governor": "performance", "nvpmodel_mode": "", "jetson_clocks": "", "batch_size": "1",
               "versions.onnxruntime": "1.17.1", "versions.agent": "0.1.0"}


def run_ns(seed: int, scale: float = 1.0, n: int = 4000, median_ns: float = 10_000.0) -> tuple[int, ...]:
    """A run as boards produce them: slow AR(1) drift (so neighbours are correlated) plus rare spikes."""
    rng = np.random.default_rng(seed)
    drift = lfilter([1.0], [1.0, -0.95], rng.normal(0, 0.004, n))  # AR(1): drift[i] = 0.95 drift[i-1] + noise
    spikes = np.where(rng.random(n) < 0.01, rng.exponential(0.5, n), 0.0)
    return tuple(np.round(median_ns * scale * np.exp(drift + rng.normal(0, 0.01, n) + spikes)).astype(np.int64))


def sample(seed: int, scale: float = 1.0, key: BenchmarkKey = KEY, **fingerprint: str) -> Sample:
    return Sample(key, run_ns(seed, scale), {**FINGERPRINT, **fingerprint})


def test_same_distribution_is_unchanged():
    verdict = compare(sample(1), sample(2))
    assert verdict.outcome is Outcome.UNCHANGED
    assert verdict.ci_low <= 1 <= verdict.ci_high or abs(verdict.ratio - 1) < 0.05


def test_autocorrelated_aa_runs_are_unchanged_where_per_iteration_tests_cry_wolf():
    # A test on raw iterations would call most of these different; blocks absorb the drift.
    pairs = [(run_ns(seed), run_ns(seed + 100)) for seed in range(8)]
    assert sum(mannwhitneyu(a, b).pvalue < 0.01 for a, b in pairs) >= 3
    outcomes = {compare(Sample(KEY, a, FINGERPRINT), Sample(KEY, b, FINGERPRINT)).outcome for a, b in pairs}
    assert outcomes == {Outcome.UNCHANGED}


def test_twenty_percent_slowdown_is_suspect_then_regressed_when_the_rerun_agrees():
    first = compare(sample(1), sample(2, scale=1.2))
    assert first.outcome is Outcome.SUSPECT
    assert first.ratio == pytest.approx(1.2, rel=0.02)
    assert first.ci_low > 1
    confirmed = confirm(first, compare(sample(1), sample(3, scale=1.2)))
    assert confirmed.outcome is Outcome.REGRESSED


def test_suspect_with_a_clean_rerun_is_unchanged():
    first = compare(sample(1), sample(2, scale=1.2))
    confirmed = confirm(first, compare(sample(1), sample(3)))
    assert confirmed.outcome is Outcome.UNCHANGED
    assert "first pass was suspect" in confirmed.reason


def test_suspect_whose_rerun_regresses_by_a_different_amount_is_incomparable():
    # Both passes slower, but by +20 % and +50 %: the board's timing moved more than the threshold.
    first = compare(sample(1), sample(2, scale=1.2))
    confirmed = confirm(first, compare(sample(1), sample(3, scale=1.5)))
    assert confirmed.outcome is Outcome.INCOMPARABLE
    assert "not reproducible" in confirmed.reason


def test_confirm_passes_other_first_verdicts_through():
    first = compare(sample(1), sample(2))
    assert confirm(first, compare(sample(1), sample(3, scale=1.2))) == first


def test_three_percent_slowdown_is_significant_but_under_the_threshold():
    verdict = compare(sample(1), sample(2, scale=1.03))
    assert verdict.ci_low > 1  # the test sees it...
    assert verdict.outcome is Outcome.UNCHANGED  # ...but 3 % is not worth an alarm by default
    assert "under the 5% threshold" in verdict.reason


def test_twenty_percent_speedup_is_improved():
    verdict = compare(sample(1), sample(2, scale=0.8))
    assert verdict.outcome is Outcome.IMPROVED
    assert verdict.ci_high < 1


def test_exact_five_percent_reaches_the_threshold_despite_nanosecond_rounding():
    baseline = sample(1)
    slower = replace(baseline, samples_ns=tuple(np.round(np.asarray(baseline.samples_ns) * 1.05).astype(int)))
    assert compare(baseline, slower).outcome is Outcome.SUSPECT


def test_a_run_whose_timing_moved_is_too_noisy_to_judge_not_unchanged():
    # A neighbour took the core for the second half: block medians split into two modes 2x apart.
    quiet = np.asarray(run_ns(1))
    disturbed = np.concatenate([quiet[:2000], quiet[2000:] * 2]).astype(np.int64)
    slower = np.round(disturbed * 1.05).astype(np.int64)
    verdict = compare(Sample(KEY, tuple(disturbed), FINGERPRINT), Sample(KEY, tuple(slower), FINGERPRINT))
    assert verdict.outcome is Outcome.INCOMPARABLE
    assert "too noisy" in verdict.reason


@pytest.mark.parametrize(("field", "value"), [("cpu_governor", "powersave"), ("nvpmodel_mode", "MAXN"),
                                              ("jetson_clocks", "on"), ("batch_size", "8"),
                                              ("versions.onnxruntime", "1.18.0")])
def test_differing_fingerprint_is_incomparable_and_names_the_field(field, value):
    verdict = compare(sample(1), sample(2, scale=1.5, **{field: value}))
    assert verdict.outcome is Outcome.INCOMPARABLE
    assert verdict.differing_fields == (field,)
    assert field in verdict.reason and value in verdict.reason


def test_a_field_missing_on_one_side_differs():
    assert differing_fields({"versions.tensorrt": "8.6"}, {}) == ("versions.tensorrt",)


def test_too_few_samples_is_incomparable():
    short = Sample(KEY, run_ns(2)[:20], FINGERPRINT)
    verdict = compare(sample(1), short)
    assert verdict.outcome is Outcome.INCOMPARABLE
    assert "too few samples" in verdict.reason


def test_per_device_threshold_overrides_the_default():
    policy = RegressionPolicy(per_device={"pi5-01": 0.25, "orin-01": 0.02})
    assert compare(sample(1), sample(2, scale=1.2), policy).outcome is Outcome.UNCHANGED
    orin = replace(KEY, device="orin-01")
    verdict = compare(sample(1, key=orin), sample(2, scale=1.03, key=orin), policy)
    assert verdict.outcome is Outcome.SUSPECT


def test_same_input_gives_the_same_verdict():
    assert compare(sample(1), sample(2, scale=1.04)) == compare(sample(1), sample(2, scale=1.04))


def test_fingerprint_of_a_result_keeps_settings_and_versions_not_temperatures():
    result = pb.Result(batch_size=0, environment=pb.EnvironmentFingerprint(
        cpu_governor="schedutil", nvpmodel_mode="15W", jetson_clocks="off", temps_start_c={"cpu": 41.0},
        versions={"onnxruntime": "1.17.1"}))
    # batch_size 0 on the wire means 1: the record says so
    assert fingerprint_of(result_from_pb(result)) == {
        "cpu_governor": "schedutil", "nvpmodel_mode": "15W", "jetson_clocks": "off", "batch_size": "1",
        "versions.onnxruntime": "1.17.1"}


def test_exit_code_is_one_only_for_confirmed_regressions():
    suspect = compare(sample(1), sample(2, scale=1.2))
    assert exit_code([suspect, compare(sample(1), sample(2))]) == 0
    assert exit_code([confirm(suspect, compare(sample(1), sample(3, scale=1.2)))]) == 1


def _verdicts_for_junit() -> list:
    keys = [replace(KEY, model=f"m{i}") for i in range(4)]
    regressed = confirm(compare(sample(1, key=keys[0]), sample(2, 1.2, key=keys[0])),
                        compare(sample(1, key=keys[0]), sample(3, 1.2, key=keys[0])))
    incomparable = compare(sample(1, key=keys[1]), sample(2, key=keys[1], cpu_governor="powersave"))
    return [regressed, incomparable, compare(sample(1, key=keys[2]), sample(2, key=keys[2])),
            compare(sample(1, key=keys[3]), sample(2, 0.8, key=keys[3]))]


def test_junit_xml_parses_with_the_right_counts_and_numbers(tmp_path):
    path = tmp_path / "ci" / "regressions.xml"
    write_junit(_verdicts_for_junit(), path)
    suite = ET.parse(path).getroot().find("testsuite")
    counts = [suite.get(name) for name in ("tests", "failures", "skipped", "errors")]
    assert counts == ["4", "1", "1", "0"]
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["m0.int8", "m1.int8", "m2.int8", "m3.int8"]
    assert len(suite.findall("testcase/failure")) == 1 and len(suite.findall("testcase/skipped")) == 1
    failure = cases[0].find("failure").text
    assert "baseline median" in failure and "candidate median" in failure and "ratio 1.2" in failure
    assert "CI [" in failure
    assert "cpu_governor" in cases[1].find("skipped").get("message")


UNMEASURED = Unmeasured("m9", "int8", "orin-02", "tensorrt", "transport",
                        "device 'orin-02': no agent answered at 192.0.2.12:50051 within 5 s")


@pytest.mark.parametrize(("regressed", "unmeasured", "measured", "code"), [
    (False, False, True, 0),
    (True, False, True, 1),
    (True, True, True, 1),     # a confirmed regression is the finding; the summary shows the rest
    (False, True, True, 3),    # a board died: never green
    (False, False, False, 3),  # nothing planned was measured (or nothing to run)
])
def test_a_night_is_green_only_when_it_measured_what_it_planned(regressed, unmeasured, measured, code):
    verdicts = _verdicts_for_junit()[:1] if regressed else _verdicts_for_junit()[2:] if measured else []
    assert night_exit_code(verdicts, [UNMEASURED] if unmeasured else []) == code


def test_junit_reports_an_unmeasured_benchmark_as_an_error_with_its_reason(tmp_path):
    path = tmp_path / "junit.xml"
    write_junit(_verdicts_for_junit(), path, unmeasured=[UNMEASURED])
    suite = ET.parse(path).getroot().find("testsuite")
    assert [suite.get(name) for name in ("tests", "failures", "skipped", "errors")] == ["5", "1", "1", "1"]
    (case,) = [c for c in suite.findall("testcase") if c.find("error") is not None]
    assert (case.get("classname"), case.get("name")) == ("m9.int8", "orin-02.tensorrt")
    error = case.find("error")
    assert error.get("type") == "transport" and "no agent answered at 192.0.2.12:50051" in error.get("message")
    assert error.text.startswith("m9/int8 on orin-02 (tensorrt) was planned but not measured (transport)")


def test_junit_rejects_two_verdicts_for_one_key():
    verdict = compare(sample(1), sample(2))
    with pytest.raises(ValueError, match="two verdicts"):
        junit_xml([verdict, verdict])


def test_results_at_other_input_shapes_or_data_are_incomparable():
    def result(dims, source):
        r = pb.Result(batch_size=1, input_source=source)
        r.input_shapes.add(name="images", dims=dims)
        return result_from_pb(r)

    base = fingerprint_of(result([1, 3, 640, 640], "synthetic"))
    assert base["input_shapes"] == "images:1x3x640x640" and base["inputs"] == "synthetic"
    assert differing_fields(base, fingerprint_of(result([1, 3, 320, 320], "synthetic"))) == ("input_shapes",)
    assert differing_fields(base, fingerprint_of(result([1, 3, 640, 640], "inputs:" + "a" * 64))) == ("inputs",)


# --- honest verdicts: improvements confirmed like regressions, unstable runs never compared ----------

def test_an_improvement_counts_only_when_its_rerun_reproduces_it():
    """Before: an A/A night reported four "improved -20 ... -28 %" and became tomorrow's baseline."""
    first = compare(sample(1), sample(2, scale=0.8))
    assert first.outcome is Outcome.IMPROVED
    confirmed = confirm(first, compare(sample(1), sample(3, scale=0.8)))
    assert confirmed.outcome is Outcome.IMPROVED and confirmed.reason.startswith("confirmed by re-run")
    lucky = confirm(first, compare(sample(1), sample(4)))
    assert lucky.outcome is Outcome.UNCONFIRMED and "improved on the first pass only" in lucky.reason
    assert exit_code([lucky]) == 0 and night_exit_code([lucky], []) == 0


def test_a_night_with_an_unconfirmed_improvement_never_becomes_last_good():
    lucky = confirm(compare(sample(1), sample(2, scale=0.8)), compare(sample(1), sample(4)))
    assert night_verdict(0, [lucky]) == "unconfirmed"
    assert night_verdict(0, [compare(sample(1), sample(2))]) == "good"


def test_an_unstable_run_is_never_compared_silently():
    moved = replace(sample(2, scale=1.3), unstable="block medians spread 1.80x: its timing moved while it ran")
    verdict = compare(sample(1), moved)
    assert verdict.outcome is Outcome.INCOMPARABLE
    assert verdict.reason == "candidate unstable: block medians spread 1.80x: its timing moved while it ran"
    wild_tail = compare(sample(1), replace(sample(2, scale=1.3), tail="CV 350% (p99 2.5x the p50)"))
    assert wild_tail.outcome is Outcome.SUSPECT   # the medians still compare, and the verdict says why to doubt p99
    assert wild_tail.reason.endswith("(unstable tail: candidate CV 350% (p99 2.5x the p50))")


def test_instability_names_spread_timing_moves_throttling_and_heat():
    steady = result_from_pb(pb.Result(samples_ns=list(run_ns(1)), latency=pb.LatencyStats(p50_ms=0.01, cv=0.05)))
    assert instability(steady) == ""
    moved = list(run_ns(1, n=2000)) + list(run_ns(2, scale=2.0, n=2000))       # its timing doubled midway
    env = replace(steady.environment, throttled=True, throttle_flags=("under-voltage",), temps_start_c={"cpu": 45.0},
                  temps_end_c={"cpu": 61.0})
    shaky = replace(steady, samples_ns=tuple(moved), environment=env,
                    latency=replace(steady.latency, p50_ms=0.01, p99_ms=0.025, cv=3.5))
    reasons = instability(shaky)
    assert "CV 350% (p99 2.5x the p50)" in reasons and "block medians spread" in reasons
    assert "throttled during the run (under-voltage)" in reasons and "temperature rose 16 °C" in reasons
