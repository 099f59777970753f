"""Regression verdicts as JUnit XML, the format CI dashboards (Jenkins, GitLab, GitHub checks) read.

One testcase per (model, recipe, device, backend). A confirmed regression is a <failure> carrying the
numbers; an incomparable pair is <skipped> with the reason, because nothing was judged; a planned
benchmark the night could not measure is an <error> with its reason (a dead board is never a pass);
everything else passes, with the verdict and its numbers in <system-out> so a dashboard shows why.
A slowdown the history's change points confirmed tonight is a <failure> of its own, named after it.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from edgefarm.controller.nightly.changepoints import ChangePoint
from edgefarm.controller.nightly.regression import Outcome, Unmeasured, Verdict


def junit_element(verdicts: Iterable[Verdict], suite_name: str = "edgefarm-regressions",
                  unmeasured: Iterable[Unmeasured] = (), change_points: Iterable[ChangePoint] = ()) -> ET.Element:
    verdicts, unmeasured, change_points = list(verdicts), list(unmeasured), list(change_points)
    _reject_duplicate_keys(verdicts)
    failures = sum(v.outcome is Outcome.REGRESSED for v in verdicts) + len(change_points)
    skipped = sum(v.outcome is Outcome.INCOMPARABLE for v in verdicts)
    counts = {"tests": str(len(verdicts) + len(unmeasured) + len(change_points)), "failures": str(failures),
              "errors": str(len(unmeasured)), "skipped": str(skipped)}
    suites = ET.Element("testsuites", name=suite_name, **counts)
    suite = ET.SubElement(suites, "testsuite", name=suite_name, **counts)
    for verdict in verdicts:
        suite.append(testcase(verdict))
    for missing in unmeasured:
        suite.append(error_case(missing))
    for point in change_points:
        suite.append(change_point_case(point))
    return suites


def change_point_case(point: ChangePoint) -> ET.Element:
    case = ET.Element("testcase", classname="change-points", name=point.series, time="0")
    failure = ET.SubElement(case, "failure", type="change-point",
                            message=f"change point: {point.step:+.1%} since run {point.run_id}, confirmed by "
                                    f"{point.nights_after} nights")
    failure.text = point.describe()
    return case


def error_case(missing: Unmeasured) -> ET.Element:
    case = ET.Element("testcase", classname=f"{missing.model}.{missing.recipe}",
                      name=f"{missing.device}.{missing.backend or 'no-backend'}", time="0")
    error = ET.SubElement(case, "error", type=missing.kind, message=f"not measured: {missing.kind}: {missing.reason}")
    error.text = f"{missing.label()} was planned but not measured ({missing.kind}): {missing.reason}"
    return case


def testcase(verdict: Verdict) -> ET.Element:
    key = verdict.key
    case = ET.Element("testcase", classname=f"{key.model}.{key.recipe}", name=f"{key.device}.{key.backend}",
                      time="0")
    if verdict.outcome is Outcome.REGRESSED:
        failure = ET.SubElement(case, "failure", type="regression",
                                message=f"regressed: median {verdict.ratio - 1:+.1%}, ratio {verdict.ratio:.4f}, "
                                        f"CI [{verdict.ci_low:.4f}, {verdict.ci_high:.4f}]")
        failure.text = f"{verdict.numbers()}\n{verdict.reason}"
    elif verdict.outcome is Outcome.INCOMPARABLE:
        ET.SubElement(case, "skipped", message=f"incomparable: {verdict.reason}")
    ET.SubElement(case, "system-out").text = _summary(verdict)
    return case


def junit_xml(verdicts: Iterable[Verdict], suite_name: str = "edgefarm-regressions",
              unmeasured: Iterable[Unmeasured] = (), change_points: Iterable[ChangePoint] = ()) -> str:
    element = junit_element(verdicts, suite_name, unmeasured, change_points)
    ET.indent(element)
    return ET.tostring(element, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(verdicts: Iterable[Verdict], path: Path, suite_name: str = "edgefarm-regressions",
                unmeasured: Iterable[Unmeasured] = (), change_points: Iterable[ChangePoint] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(verdicts, suite_name, unmeasured, change_points), encoding="utf-8")


def _summary(verdict: Verdict) -> str:
    if verdict.outcome is Outcome.INCOMPARABLE:
        return f"{verdict.outcome}: {verdict.reason}"
    return f"{verdict.outcome}: {verdict.reason}\n{verdict.numbers()}"


def _reject_duplicate_keys(verdicts: list[Verdict]) -> None:
    # Two verdicts for one key would be two testcases with one name; a dashboard would show either.
    seen = set()
    for verdict in verdicts:
        if verdict.key in seen:
            raise ValueError(f"two verdicts for {verdict.key.label()}: pass the confirmed one only")
        seen.add(verdict.key)
