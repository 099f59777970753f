"""Nightly mode: run the matrix, compare each (model, recipe, device, backend) with the
baseline night on raw samples, re-run suspects once on a fresh lease, write CSV/HTML/JUnit.

Exit 1 only on a confirmed regression, and 3 when the night could not measure everything it
planned: a night is green only when it measured what it planned, and only a green night becomes
a baseline. `edgefarm resume` finishes an interrupted night exactly as an uninterrupted one ends."""
from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.farm import RetryPolicy
from edgefarm.controller.execution.farm_run import FarmRun, FarmRunConfig
from edgefarm.controller.nightly.changepoints import ChangePoint
from edgefarm.controller.nightly.history import (
    KIND,
    HistoryFilter,
    history_change_points,
    history_frame,
    newly_confirmed_slowdowns,
)
from edgefarm.controller.nightly.junit import write_junit
from edgefarm.controller.nightly.regression import (
    EXIT_GOOD,
    EXIT_INCOMPLETE,
    EXIT_REGRESSED,
    NEEDS_RERUN,
    BenchmarkKey,
    Outcome,
    RegressionPolicy,
    Sample,
    Unmeasured,
    Verdict,
    compare,
    confirm,
    night_exit_code,
    sample_of,
    unconfirmed,
)
from edgefarm.controller.planning.run_plan import model_name
from edgefarm.controller.reports import write_csv, write_html
from edgefarm.controller.reports.trend import trend_plot
from edgefarm.controller.results.frame import result_row
from edgefarm.controller.results.layer_frame import layer_tables
from edgefarm.controller.results.store import ResultStore, StoredResult

HISTORY_NIGHTS = 14
UNMEASURED_COLUMNS = ("model", "recipe", "device", "backend", "kind", "reason")


class BaselineError(ValueError):
    pass


VERDICT_OF_EXIT = {EXIT_GOOD: "good", EXIT_REGRESSED: "regressed", EXIT_INCOMPLETE: "incomplete"}


class NightInterrupted(KeyboardInterrupt):
    """Ctrl-C during a night: what was measured is stored, and `edgefarm resume RUN_ID` finishes it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


@dataclass(frozen=True)
class NightlyReport:
    run_id: str
    baseline: str | None
    verdicts: tuple[Verdict, ...]
    unmeasured: tuple[Unmeasured, ...]
    planned: int
    exit_code: int
    change_points: tuple[ChangePoint, ...] = ()   # slowdowns over the history that tonight confirmed

    def summary(self) -> str:
        regressed = sum(v.outcome is Outcome.REGRESSED for v in self.verdicts)
        stepped = f", change points {len(self.change_points)}" if self.change_points else ""
        return (f"planned {self.planned}, measured {len(self.verdicts)}, not measured {len(self.unmeasured)}, "
                f"regressed {regressed}{stepped}")


def run_nightly(config: FarmRunConfig, store: ResultStore, ui: RunConsole, baseline: str, out: Path,
                policy: RetryPolicy | None = None) -> NightlyReport:
    farm = FarmRun(config, store, ui, policy)
    base_id = resolve_baseline(store, baseline)
    tonight = farm.start(kind=KIND, baseline=base_id)
    if tonight.interrupted:
        raise NightInterrupted(tonight.run_id)
    return finish_night(store, farm, tonight.run_id, base_id, out)


def resume_night(store: ResultStore, ui: RunConsole, run_id: str, out: Path) -> NightlyReport:
    """The jobs an interrupted night did not finish, then its verdicts, reports and JUnit, against
    the baseline it started with: the same ending as a night that was never interrupted."""
    config, base_id = stored_config(store, run_id)
    farm = FarmRun(config, store, ui)
    if farm.resume(run_id).interrupted:
        raise NightInterrupted(run_id)
    return finish_night(store, farm, run_id, base_id, out)


def stored_config(store: ResultStore, run_id: str) -> tuple[FarmRunConfig, str | None]:
    plan = store.run_plan(run_id)
    base_id = plan.pop("baseline", None)
    return FarmRunConfig(**plan), base_id


def finish_night(store: ResultStore, farm: FarmRun, run_id: str, base_id: str | None, out: Path) -> NightlyReport:
    verdicts = _first_pass(store, base_id, run_id, farm)
    verdicts = _confirm_reruns(store, base_id, run_id, verdicts, farm)
    unmeasured = _unmeasured(store, run_id, verdicts)
    measured = [v for v in verdicts if v.outcome is not Outcome.SUSPECT]
    trend = history_frame(store, HistoryFilter(nights=HISTORY_NIGHTS))
    points = history_change_points(trend)
    stepped = newly_confirmed_slowdowns(points, run_id, trend)
    code = EXIT_REGRESSED if stepped else night_exit_code(measured, unmeasured)
    store.set_verdict(run_id, night_verdict(code, measured))
    _write_outputs(store, run_id, base_id, NightOutputs(measured, unmeasured, points, stepped, trend), out)
    return NightlyReport(run_id, base_id, tuple(measured), tuple(unmeasured), len(farm.planned), code,
                         tuple(stepped))


def night_verdict(code: int, verdicts: list[Verdict]) -> str:
    """good, regressed or incomplete; a green night with an improvement its re-run did not reproduce
    is `unconfirmed`: it never becomes last-good, or it would hide the next night's regression."""
    if code == EXIT_GOOD and any(v.outcome is Outcome.UNCONFIRMED for v in verdicts):
        return "unconfirmed"
    return VERDICT_OF_EXIT[code]


def _unmeasured(store: ResultStore, run_id: str, verdicts: list[Verdict]) -> list[Unmeasured]:
    """Failed jobs, and suspects whose confirmation re-run did not measure (no verdict either way)."""
    failed = [Unmeasured(job.model, job.variant, job.device, job.backend, kind, message)
              for job, kind, message in store.failures(run_id)]
    unconfirmed = [Unmeasured(v.key.model, v.key.recipe, v.key.device, v.key.backend, "unconfirmed",
                              f"suspect ({v.ratio - 1:+.1%}) and its re-run on {v.key.device} did not measure")
                   for v in verdicts if v.outcome is Outcome.SUSPECT]
    return failed + unconfirmed


def resolve_baseline(store: ResultStore, baseline: str) -> str | None:
    """'last-good': the newest night that measured everything it planned without a confirmed
    regression (None on the first night). Incomplete and regressed nights never become baselines."""
    if baseline != "last-good":
        if not store.run_exists(baseline):
            raise BaselineError(f"baseline run {baseline!r} is not in {store.path}; use 'last-good' or a run id")
        return baseline
    return next((run_id for run_id, verdict in store.runs_of_kind(KIND, 100) if verdict == "good"), None)


def _key(r: StoredResult) -> BenchmarkKey:
    return BenchmarkKey(r.job.model, r.job.variant, r.job.device, r.job.backend)


def _planned(r: StoredResult) -> tuple[str, str, str, str]:
    """What a night asked for: model, recipe, target (a device or a pool) and backend. Nights are
    matched on this, so a pool job that lands on another board than last night is still compared,
    and the board difference makes it incomparable rather than a new benchmark."""
    return r.job.model, r.job.variant, r.target or r.job.device, r.job.backend


def _sample(key: BenchmarkKey, r: StoredResult) -> Sample:
    sample = sample_of(key, r.result)
    return replace(sample, fingerprint={**sample.fingerprint, "board": r.job.device})


def _compare(base: StoredResult, tonight: StoredResult, policy: RegressionPolicy) -> Verdict:
    key = _key(tonight)
    return compare(_sample(key, base), _sample(key, tonight), policy)


def _first_pass(store: ResultStore, base_id: str | None, run_id: str, farm: FarmRun) -> list[Verdict]:
    tonight = {_planned(r): r for r in store.results(run_id)}
    if base_id is None:
        return [Verdict(_key(r), Outcome.UNCHANGED, "first night: no baseline yet; tonight becomes the baseline")
                for r in tonight.values()]
    base = {_planned(r): r for r in store.results(base_id)}
    policy = farm.matrix.regression
    return [_compare(base[k], r, policy) if k in base
            else Verdict(_key(r), Outcome.UNCHANGED, "new benchmark: nothing to compare with yet")
            for k, r in tonight.items()]


def _confirm_reruns(store: ResultStore, base_id: str | None, tonight_id: str, verdicts: list[Verdict],
                    farm: FarmRun) -> list[Verdict]:
    """Suspects and improvements re-run once, each on its own board; unconfirmed either way without it."""
    suspects = [v for v in verdicts if v.outcome in NEEDS_RERUN]
    if not suspects:
        return verdicts
    # Each re-run is pinned to its suspect's board: confirming on another board of a pool would compare boards.
    pins = {p.key: v.key.device for p in farm.planned for v in suspects
            if (model_name(p.model), p.recipe) == (v.key.model, v.key.recipe) and v.key.device in p.candidates}
    rerun = farm.start(kind=f"{KIND}-rerun", only=pins)  # a new run: fresh leases, fresh workers
    again = {_key(r): r for r in store.results(rerun.run_id)}
    base = {_planned(r): r for r in store.results(base_id)}
    tonight = {_key(r): r for r in store.results(tonight_id)}
    policy = farm.matrix.regression
    return [confirm(v, _compare(base[_planned(tonight[v.key])], again[v.key], policy)) if v.key in again
            else unconfirmed(v, f"its re-run on {v.key.device} did not measure") if v.outcome is Outcome.IMPROVED
            else v for v in verdicts]


@dataclass(frozen=True)
class NightOutputs:
    """What a night's reports show: verdicts, what went unmeasured, and the history with its change points."""

    verdicts: list[Verdict]
    unmeasured: list[Unmeasured]
    change_points: list[ChangePoint]
    stepped: list[ChangePoint]          # slowdowns tonight confirmed: they fail the night
    trend: pd.DataFrame


def _write_outputs(store: ResultStore, run_id: str, base_id: str | None, night: NightOutputs, out: Path) -> None:
    stored = store.results(run_id)
    frame = pd.DataFrame([result_row(r) for r in stored])
    out.mkdir(parents=True, exist_ok=True)
    write_junit(night.verdicts, out / "junit.xml", unmeasured=night.unmeasured, change_points=night.stepped)
    pd.DataFrame([vars(u) for u in night.unmeasured], columns=list(UNMEASURED_COLUMNS)).to_csv(
        out / "not-measured.csv", index=False)
    if frame.empty:
        return
    write_csv(frame, out / "report.csv")
    write_html(frame, out / "report.html", f"edgefarm nightly {run_id}",
               extra_plots=[trend_plot(night.trend, night.change_points)],
               preamble_html=verdict_table(night.verdicts, base_id, night.unmeasured)
               + change_point_table(night.change_points, night.stepped), layers=layer_tables(stored))


def change_point_table(points: list[ChangePoint], stepped: list[ChangePoint]) -> str:
    if not points:
        return ""
    rows = "".join(f"<tr class=\"{'stepped' if p in stepped else 'change-point'}\"><td>{html.escape(p.series)}</td>"
                   f"<td>{html.escape(p.run_id)}</td><td>{p.step:+.1%}</td>"
                   f"<td>{p.before_ms:.4g} → {p.after_ms:.4g}</td><td>{p.p_value:.1e}</td>"
                   f"<td>{p.nights_after}{' (confirmed)' if p.confirmed else ''}</td></tr>" for p in points)
    return ("<h2>Change points over the nights</h2>\n<div class=\"table-wrap\"><table class=\"results\"><thead>"
            "<tr><th>benchmark</th><th>first night at the new level</th><th>step</th><th>median (ms)</th><th>p</th>"
            f"<th>nights since</th></tr></thead><tbody>{rows}</tbody></table></div>")


def verdict_table(verdicts: list[Verdict], base_id: str | None, unmeasured: list[Unmeasured] = ()) -> str:
    head = f"<h2>Verdicts against {html.escape(base_id or 'no baseline (first night)')}</h2>"
    rows = "".join(f"<tr><td>{html.escape(v.key.label())}</td><td>{v.outcome.value}</td>"
                   f"<td>{'' if v.ratio != v.ratio else f'{v.ratio:.3f}'}</td><td>{html.escape(v.reason)}</td></tr>"
                   for v in verdicts)
    rows += "".join(f'<tr class="not-measured"><td>{html.escape(u.label())}</td><td>not measured</td><td></td>'
                    f"<td>{html.escape(f'{u.kind}: {u.reason}')}</td></tr>" for u in unmeasured)
    return (f'{head}\n<div class="table-wrap"><table class="results"><thead><tr><th>benchmark</th>'
            f"<th>verdict</th><th>median ratio</th><th>why</th></tr></thead><tbody>{rows}</tbody></table></div>")
