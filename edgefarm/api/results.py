"""What the API returns: frozen records over the store's rows, each with a DataFrame view and a
compact HTML table for notebooks. They only read: building one never measures anything."""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from edgefarm.controller.agents.records import BenchmarkResult, Fingerprint, LatencyStats, PowerSummary
from edgefarm.controller.console import _cell
from edgefarm.controller.nightly.run import NightlyReport, night_verdict
from edgefarm.controller.planning.run_plan import JobFailure
from edgefarm.controller.reports.layer_diff import LayerDiff, explain
from edgefarm.controller.results.frame import result_row
from edgefarm.controller.results.store import JobRecord, RunSummary, StoredResult, VariantRecord

# The columns a run shows in a notebook; the full report's columns stay in `frame`.
COMPACT = ("variant", "device", "backend", "latency_p50_ms", "latency_p99_ms", "fps", "size_bytes", "accuracy",
           "fidelity_cosine", "input_shapes")
CAPS = {"max-iterations": "the --max-iterations cap", "max-seconds": "the max-seconds cap"}
RUN_COLUMNS = ("id", "created_at", "command", "kind", "status", "verdict", "results", "failures")


@dataclass(frozen=True)
class ResultRecord:
    """One measured variant on one device: the board's full result (statistics, raw per-iteration
    samples, fingerprint, power, fidelity, input shapes) and the variant it measured.

    Example:
        >>> r = run.results[0]
        >>> r.variant, r.device, r.latency.p99_ms, len(r.samples_ns)
        ('fp32', 'local', 0.021, 9400)
    """

    run_id: str
    model: str
    variant: str
    device: str
    backend: str
    measured_at: datetime
    result: BenchmarkResult = field(repr=False)
    compressed: VariantRecord = field(repr=False)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> ResultRecord:
        job = stored.job
        return cls(job.run_id, job.model, job.variant, job.device, job.backend,
                   datetime.fromtimestamp(stored.measured_at, UTC), stored.result, stored.variant)

    @property
    def latency(self) -> LatencyStats:
        """End-to-end host latency statistics (ms), computed from `samples_ns`."""
        return self.result.latency

    @property
    def samples_ns(self) -> tuple[int, ...]:
        """Every measured iteration's latency in nanoseconds, in time order."""
        return self.result.samples_ns

    @property
    def fingerprint(self) -> Fingerprint:
        """The board's state around the measurement: governor, clocks, temperatures, throttling, versions."""
        return self.result.environment

    @property
    def power(self) -> PowerSummary:
        return self.result.power

    def row(self) -> dict:
        """This result as one row of the report (the columns of `run.frame`)."""
        job = JobRecord(self.result.job_id, self.run_id, self.model, self.variant, self.device, self.backend,
                        self.compressed.sha256)
        return result_row(StoredResult(job, self.compressed, self.result, self.measured_at.timestamp()))

    def _repr_html_(self) -> str:
        row = self.row()
        return _table([{k: row.get(k) for k in ("model", *COMPACT, "latency_count", "provider")}],
                      caption=f"result of run {html.escape(self.run_id)}")


@dataclass(frozen=True)
class Run:
    """A stored run: one row per variant × device in `frame` (the report's columns, as
    `edgefarm report` writes them to CSV), the same results as typed records, and what failed.

    Example:
        >>> run = farm.run("digits-cnn", recipes=["fp32", "int8-static"])
        >>> run.frame[["variant", "latency_p99_ms", "size_bytes"]]
        >>> run.exit_code     # what `edgefarm run` would exit with: 0, 1 (a job failed) or 2 (bad input)
        0
    """

    id: str
    db: str
    frame: pd.DataFrame = field(repr=False, compare=False)
    results: tuple[ResultRecord, ...] = ()
    failures: tuple[JobFailure, ...] = ()
    warnings: tuple[str, ...] = ()
    phase_seconds: dict[str, float] = field(default_factory=dict, compare=False)
    bytes_uploaded: int = 0

    def __repr__(self) -> str:
        return (f"Run(id={self.id!r}, results={len(self.results)}, failures={len(self.failures)}, "
                f"warnings={len(self.warnings)}, db={self.db!r})")

    @property
    def exit_code(self) -> int:
        """2 when a job was refused as bad input (the caller can fix it), 1 for other failures, else 0."""
        if any(f.kind == "bad-input" for f in self.failures):
            return 2
        return 1 if self.failures else 0

    def _repr_html_(self) -> str:
        rows = self.frame[[c for c in COMPACT if c in self.frame]].to_dict("records") if len(self.frame) else []
        notes = [f"{f.variant} on {f.device} failed ({f.kind}): {f.message}" for f in self.failures]
        return _table(rows, caption=f"edgefarm run {html.escape(self.id)}", notes=[*notes, *self.warnings])


def capped_warnings(frame: pd.DataFrame, min_seconds: float) -> tuple[str, ...]:
    """A cap that ended measuring before min_seconds, or a result whose numbers moved while it ran
    (`unstable`), is never silent (the CLI prints these)."""
    rows = frame.to_dict("records") if len(frame) else []
    capped = tuple(f"{r['variant']} on {r['device']}: measuring stopped at {CAPS[r['stopped_by']]} after "
                   f"{r['measure_seconds']:.1f} s, short of --min-seconds {min_seconds:g}; "
                   "raise the cap for the full duration"
                   for r in rows if r.get("stopped_by") in CAPS and r["measure_seconds"] < min_seconds)
    unstable = tuple(f"{r['variant']} on {r['device']}: unstable: {r['unstable']}; compare it with care, or "
                     "measure again on a quiet board" for r in rows if r.get("unstable"))
    return capped + unstable


@dataclass(frozen=True)
class Report:
    """The files `Farm.report` wrote (None where not asked) and the frame they were written from.

    Example:
        >>> farm.report("latest", html="report.html").html
        PosixPath('report.html')
    """

    run_id: str
    frame: pd.DataFrame = field(repr=False, compare=False)
    csv: Path | None = None
    html: Path | None = None


@dataclass(frozen=True)
class Diff:
    """Two stored results' per-layer profiles lined up, as `edgefarm diff` prints them: one row per
    aligned group in `frame` (time in A and B, ratio, precision and placement on each side, a note
    where the placement changed), totals by glue, op family and placement in `totals`, and a few
    sentences on where B's time goes in `explanation`. `csv` / `html`: the files written, if asked.

    Example:
        >>> d = farm.diff("latest:fp32", "latest:int8-static")
        >>> d.aligned_share, d.explanation[1]
        (1.0, 'layer time: A 150.0 us, B 190.0 us (+40.0 us)')
        >>> d.frame[["family", "time_a_us", "time_b_us", "ratio", "note"]]
    """

    a: str
    b: str
    aligned_share: float            # of A's compute (non-glue) layers, the share in an aligned group
    frame: pd.DataFrame = field(repr=False, compare=False)
    totals: pd.DataFrame = field(repr=False, compare=False)
    explanation: tuple[str, ...] = field(repr=False, default=())
    layers: LayerDiff | None = field(repr=False, compare=False, default=None)   # the typed groups
    csv: Path | None = None
    html: Path | None = None

    @classmethod
    def of(cls, diff: LayerDiff, csv: Path | None = None, html: Path | None = None) -> Diff:
        return cls(diff.a.label, diff.b.label, diff.aligned_share, diff.frame(), diff.totals(),
                   tuple(explain(diff)), diff, csv, html)

    def text(self) -> str:
        """The aligned groups, the totals and the explanation as plain text (what `edgefarm diff` prints)."""
        shown = self.frame[list(TEXT_COLUMNS)].copy()
        for column in ("layers_a", "layers_b"):
            shown[column] = shown[column].str.slice(0, 40)
        totals = self.totals.to_string(index=False, float_format=lambda v: f"{v:.1f}")
        return "\n".join([shown.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"), "",
                          totals, "", *self.explanation])

    def as_json(self) -> dict:
        """Groups and totals as JSON-ready data (what `edgefarm diff --json` prints)."""
        return {"a": self.a, "b": self.b, "aligned_share": self.aligned_share,
                "groups": json.loads(self.frame.to_json(orient="records")),
                "totals": json.loads(self.totals.to_json(orient="records"))}

    def _repr_html_(self) -> str:
        rows = self.frame[list(TEXT_COLUMNS)].to_dict("records")
        return _table(rows, caption=f"diff A {html.escape(self.a)} → B {html.escape(self.b)}",
                      notes=self.explanation)


TEXT_COLUMNS = ("match", "family", "layers_a", "layers_b", "time_a_us", "time_b_us", "ratio", "precision_a",
                "precision_b", "placement_a", "placement_b", "note")


@dataclass(frozen=True)
class NightlyOutcome(NightlyReport):
    """A night's ending: a verdict per measured benchmark, what could not be measured and why, and
    the exit code `edgefarm nightly` gives it (0 good, 1 confirmed regression, 3 incomplete).

    Example:
        >>> night = farm.nightly("nightly.yaml", out="nightly-out")
        >>> night.verdict, night.exit_code, night.summary()
        ('good', 0, 'planned 2, measured 2, not measured 0, regressed 0')
    """

    out: Path = field(kw_only=True)   # keyword-only: it follows NightlyReport's defaulted fields

    @classmethod
    def of(cls, report: NightlyReport, out: Path) -> NightlyOutcome:
        return cls(**{f.name: getattr(report, f.name) for f in fields(NightlyReport)}, out=out)

    @property
    def verdict(self) -> str:
        """'good', 'unconfirmed', 'regressed' or 'incomplete', as stored with the run."""
        return night_verdict(self.exit_code, list(self.verdicts))

    @property
    def frame(self) -> pd.DataFrame:
        """One row per planned benchmark: model, recipe, device, backend, verdict, median ratio, why."""
        rows = [{**_key(v.key), "verdict": v.outcome.value, "ratio": v.ratio, "why": v.reason} for v in self.verdicts]
        rows += [{**_key(u), "verdict": "not measured", "ratio": math.nan, "why": f"{u.kind}: {u.reason}"}
                 for u in self.unmeasured]
        return pd.DataFrame(rows, columns=["model", "recipe", "device", "backend", "verdict", "ratio", "why"])

    def _repr_html_(self) -> str:
        caption = f"nightly {html.escape(self.run_id)}: {self.verdict} ({self.summary()})"
        return _table(self.frame.to_dict("records"), caption=caption)


@dataclass(frozen=True)
class Resumed:
    """A resumed farm run that is not a night: how many jobs finished now and how many failed.

    Example:
        >>> farm.resume("20261124-221500-ab12cd").exit_code
        0
    """

    run_id: str
    finished: int
    failed: int

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def runs_frame(summaries: tuple[RunSummary, ...]) -> pd.DataFrame:
    """Stored runs, newest first; created_at as UTC timestamps."""
    frame = pd.DataFrame([s.__dict__ for s in summaries], columns=list(RUN_COLUMNS))
    frame["created_at"] = pd.to_datetime(frame["created_at"], unit="s", utc=True)
    return frame


def _key(k) -> dict:
    return {"model": k.model, "recipe": k.recipe, "device": k.device, "backend": k.backend}


def _table(rows: list[dict], caption: str, notes: list[str] | tuple[str, ...] = ()) -> str:
    """A compact HTML table: numbers to three significant digits, missing values as a dash."""
    columns = list(rows[0]) if rows else []
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    extra = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + (f"<ul>{extra}</ul>" if extra else ""))

