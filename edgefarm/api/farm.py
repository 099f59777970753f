"""`edgefarm.Farm`: everything the CLI's run, bisect, report, runs, nightly and resume do, as Python calls
that return DataFrames and typed records. The CLI parses its arguments and calls these; the calls
run the one executor (RunExecutor / FarmRun / the nightly) and raise the API's typed exceptions."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
from rich.text import Text

from edgefarm.api.bisection import Bisection, artifacts_argument
from edgefarm.api.boards import Boards
from edgefarm.api.config import (
    DataFiles,
    check_measure,
    default_cache_dir,
    default_db,
    leases_url,
    results_db,
    shown_location,
)
from edgefarm.api.errors import BadInputError, translated
from edgefarm.api.history import History
from edgefarm.api.results import (
    Diff,
    NightlyOutcome,
    Report,
    ResultRecord,
    Resumed,
    Run,
    capped_warnings,
    runs_frame,
)
from edgefarm.api.tuning import Tuning
from edgefarm.controller.console import RunConsole
from edgefarm.controller.planning.run_plan import (
    AS_IS,
    MeasureSettings,
    PhaseTimes,
    RunOutcome,
    RunPlan,
    Target,
    prebuilt_format,
)
from edgefarm.controller.reports.layer_diff import LayerDiff
from edgefarm.controller.results.frame import result_row
from edgefarm.controller.results.layer_frame import LayerTables, layer_tables
from edgefarm.controller.results.store import ResultStore, RunSummary

log = logging.getLogger(__name__)
Shapes = Mapping[str, Sequence[int]] | Sequence[str]   # {"images": (1, 3, 640, 640)} or ["images:1x3x640x640"]
LEASE_WAIT_S = 3600.0
LOCAL = "local"


class _Console(RunConsole):
    """Progress as the CLI shows it (rich bars in a terminal or notebook, plain lines in a log); with
    progress off, nothing is printed and the run's notes go to logging instead."""

    def __init__(self, progress: bool) -> None:
        super().__init__(quiet=not progress)
        self._shown = progress

    def note(self, text: str) -> None:
        if not self._shown:
            log.info("%s", Text.from_markup(text).plain)
        super().note(text)


class Farm:
    """A results store, a model cache and (optionally) a devices file: the handle every call goes
    through. Opening a Farm touches nothing; each call opens the store, and closes it when done.

    Example:
        >>> import edgefarm
        >>> farm = edgefarm.Farm(devices="devices.yaml", db="results.sqlite")
        >>> run = farm.run("model.onnx", device="jetson-orin-01", recipes=["fp32", "int8-dynamic"])
        >>> run.frame[["variant", "latency_p99_ms"]]

    devices: the devices file (default ./devices.yaml, read when a device is named). db: a SQLite
    file, sqlite:///path or postgresql://user@host/db (default $EDGEFARM_DB, else a file in the user
    data dir). cache_dir: models and variants (default $EDGEFARM_CACHE_DIR, else the user cache dir).
    leases: the lease database shared with the farm (default $EDGEFARM_LEASES, else beside the results).
    """

    def __init__(self, devices: str | Path | None = None, db: str | Path | None = None, *,
                 cache_dir: str | Path | None = None, leases: str | None = None) -> None:
        self.devices = Path(devices) if devices is not None else None
        self.db = results_db(db) if db else default_db()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.leases = leases
        self._local_only = False

    @classmethod
    def local(cls, db: str | Path | None = None, *, cache_dir: str | Path | None = None) -> Farm:
        """A farm of one board: the embedded agent on 127.0.0.1, started for each run and stopped at
        its end (what `edgefarm run --local` does), spoken to over real gRPC.

        Example:
            >>> farm = edgefarm.Farm.local(db="results.sqlite")
            >>> farm.run("digits-cnn").frame["latency_p50_ms"]
        """
        farm = cls(None, db, cache_dir=cache_dir)
        farm._local_only = True
        return farm

    @property
    def boards(self) -> Boards:
        """The devices file's boards: ping, status and health checks, quarantine, certificates, provisioning.

        Example:
            >>> farm.boards.status()[["device", "state", "owner"]]
        """
        return Boards(self.devices or Path("devices.yaml"), self._leases_url)

    @property
    def location(self) -> str:
        """Where the results are: the SQLite file, or the database URL without its password."""
        return shown_location(self.db)

    def __repr__(self) -> str:
        where = "local" if self._local_only else str(self.devices or "devices.yaml")
        return f"Farm(devices={where!r}, db={self.location!r}, cache_dir={str(self.cache_dir)!r})"

    # --- measuring ------------------------------------------------------------------------------

    def run(self, model: str | Path, *, device: str | None = None, recipes: Sequence[str] | None = None,
            shapes: Shapes | None = None, inputs: str | Path | None = None,
            calib_data: str | Path | None = None, eval_data: str | Path | None = None,
            preprocess: str | None = None, measure: MeasureSettings | None = None, progress: bool = True,
            label: str | None = None, backend: str | None = None) -> Run:
        """Compress `model` with each recipe and measure every variant on one board; returns the stored run.

        model: a registry name (digits-cnn) or an .onnx / .tflite path. device: a name from the devices
        file (None: the embedded local agent). recipes: default fp32 (a .tflite runs as is). shapes: the
        exact shape of inputs with dynamic dims, {"images": (1, 3, 640, 640)} or ["images:1x3x640x640"].
        inputs: an .npz of your tensors. calib_data / eval_data: an .npz, or a folder of images with
        `preprocess` ("size=224x224,scale=1/255,layout=nchw,color=rgb"). measure: edgefarm.Measure(...).
        progress: bars on stderr (rich in a terminal or notebook, plain lines in a log). label: the
        command stored with the run (default "run MODEL"). backend: run every variant on this backend
        ("openvino" for an ONNX variant on a board that also has ONNX Runtime); None: the board's preferred
        backend for each variant's format (controller/planning/backends.py).

        Raises BadInputError (or a subclass: UnknownDeviceError, BadRecipeError, InputShapeError,
        UnreachableDeviceError, DeviceBusyError) with the CLI's message; results stored before stay.

        Example:
            >>> run = farm.run("digits-cnn", recipes=["fp32", "int8-static"],
            ...                measure=edgefarm.Measure(warmup_seconds=0.05, min_seconds=0.2))
            >>> run.frame[["variant", "device", "latency_p99_ms", "size_bytes"]]
        """
        with translated():
            return self._run(str(model), device, recipes, shapes, inputs, DataFiles(
                _path(calib_data), _path(eval_data), preprocess), measure or MeasureSettings(), progress, label,
                backend or "")

    def _run(self, model: str, device: str | None, recipes: Sequence[str] | None, shapes: Shapes | None,
             inputs: str | Path | None, data: DataFiles, measure: MeasureSettings, progress: bool,
             label: str | None, backend: str) -> Run:
        from edgefarm.controller.planning.input_plan import parse_shape_args

        prebuilt = prebuilt_format(model) is not None
        recipes = tuple(recipes or [AS_IS if prebuilt else "fp32"])
        target = self._target(device)
        if not prebuilt:
            check_recipes(recipes)
        check_backend(backend, target, model, recipes)
        check_measure(measure)
        calib, evaluate = data.as_npz(self.cache_dir)
        plan = RunPlan(model, recipes, target, self.cache_dir, measure, calib, evaluate,
                       parse_shape_args(_shape_args(shapes)), _path(inputs), backend)
        with self._store() as store:
            times, run_id = PhaseTimes(), store.new_run(label or f"run {model}")
            outcome = self._execute(store, plan, run_id, times, progress)
            return self._finished(store, outcome, times, measure)

    def _execute(self, store: ResultStore, plan: RunPlan, run_id: str, times: PhaseTimes,
                 progress: bool) -> RunOutcome:
        from edgefarm.controller.agents.client import AgentUnreachableError
        from edgefarm.controller.agents.security import SecurityError
        from edgefarm.controller.execution.single_run import RunExecutor
        from edgefarm.controller.leases import LeaseError
        from edgefarm.controller.planning.job_inputs import AgentTooOldError

        ui = _Console(progress)
        leases = self._leases_url() if plan.target.address else None  # the embedded agent is this run's own
        try:
            with ui.live():
                outcome = RunExecutor(store, ui, times, leases).execute(plan, run_id)
        except (LeaseError, AgentUnreachableError, AgentTooOldError, SecurityError):  # nothing measured: busy,
            # unreachable, too old, or not dialled as declared
            store.finish_run(run_id, "refused")
            raise
        except BaseException:
            store.finish_run(run_id, "failed")
            raise
        store.finish_run(run_id, "done" if not outcome.failures else "partial")
        return outcome

    def _finished(self, store: ResultStore, outcome: RunOutcome, times: PhaseTimes, measure: MeasureSettings) -> Run:
        run = _load(store, outcome.run_id, outcome.failures)
        warnings = capped_warnings(run.frame, measure.min_seconds)
        for warning in warnings:
            log.info("%s", warning)
        return Run(run.id, run.db, run.frame, run.results, outcome.failures, warnings, dict(times.seconds),
                   outcome.bytes_uploaded)

    def _target(self, device: str | None) -> Target:
        from edgefarm.controller.config.targets import resolve_target

        if self._local_only and device not in (None, LOCAL):
            raise BadInputError(f"Farm.local() measures on its embedded agent only; for device {device!r} "
                                "use edgefarm.Farm(devices='devices.yaml')")
        return resolve_target(None if self._local_only else device, self.devices)

    def bisect(self, artifacts: str | Path | Sequence[str | Path], *, device: str | None = None,
               good: str | None = None, bad: str | None = None, threshold: float = 0.05, max_rounds: int = 3,
               shapes: Shapes | None = None, inputs: str | Path | None = None,
               measure: MeasureSettings | None = None, progress: bool = True) -> Bisection:
        """Find the first artifact of an ordered sequence that is slower than the good end by
        `threshold` or more, measuring as few as needed (the ends, then about log2(n) midpoints).

        artifacts: a directory (its .onnx/.tflite files sorted by name), a comma list, or a sequence of
        paths: versions of one model (the same inputs and outputs), oldest first. device: a device or a
        pool of the devices file (None: the embedded local agent); a board lost mid-bisect hands over to
        the pool's next board. good / bad: the ends (a file name, path or position; default the first
        and last). threshold: the slowdown of the median that counts (0.05 = 5 %). max_rounds: runs of
        each side a noisy step may pool before it answers unknown. shapes, inputs, measure: as `run`.

        Each step is a real job on the board, stored as a normal result of run `run_id` (kind
        "bisect"), and the search is stored with the run after every verdict. Artifacts of different
        models or input shapes are refused before anything is measured (BadInputError; InputShapeError
        for a dynamic dim nothing resolves); ends that do not bracket a regression are reported
        after measuring both (status good-end-not-good / bad-end-not-bad, exit_code 2).

        Example:
            >>> b = farm.bisect("exports/", device="jetson-orin-01", threshold=0.05)
            >>> print(b.summary())      # found: ckpt-12.onnx is the first artifact slower than ...
            >>> b.frame[["artifact", "verdict", "ratio", "rounds"]]
        """
        from edgefarm.controller.execution.bisect_run import BisectConfig
        from edgefarm.controller.planning.input_plan import parse_shape_args

        with translated():
            config = BisectConfig(artifacts_argument(artifacts), None if self._local_only else device,
                                  str(self.devices) if self.devices else None, good, bad, threshold, max_rounds,
                                  parse_shape_args(_shape_args(shapes)), str(inputs) if inputs else None,
                                  check_measure(measure or MeasureSettings()))
            if self._local_only and device not in (None, LOCAL):
                raise BadInputError(f"Farm.local() measures on its embedded agent only; for device {device!r} "
                                    "use edgefarm.Farm(devices='devices.yaml')")
            return self._bisect(config, progress)

    def _bisect(self, config, progress: bool) -> Bisection:
        from edgefarm.controller.execution.bisect_run import run_bisect

        ui = _Console(progress)
        with self._store() as store, ui.live():
            outcome = run_bisect(config, store, ui, self.cache_dir, self._leases_url() if config.device else None)
            return Bisection.of(outcome.run_id, store.path, outcome.result)

    def tune(self, model: str | Path, *, device: str | None = None, max_drop: float = 1.0,
             objective: str = "latency", recipes: Sequence[str] | None = None, backends: Sequence[str] | None = None,
             max_jobs: int | None = None, shapes: Shapes | None = None, inputs: str | Path | None = None,
             calib_data: str | Path | None = None, eval_data: str | Path | None = None,
             measure: MeasureSettings | None = None, hwmp: bool = True, progress: bool = True) -> Tuning:
        """Search the fastest variant of `model` on the board (or each board kind of a pool) that loses at
        most `max_drop` points of accuracy (or top-1 agreement with fp32 where there are no labels).

        Candidates: the registry's recipes (or `recipes`) crossed with the board's backend routes and
        thread counts; budget-breakers are dropped on the controller before any board time; the rest
        are ranked by a brief measurement and the leaders measured fully (successive halving) until the
        front stops moving or `max_jobs`. Adds the hardware-aware mixed-precision variant (layers kept
        fp32 where int8 is measured slower on this board, or sensitive). objective: latency | energy
        (refused on a board without a power sensor) | size. measure: the full measurement's settings.

        Example:
            >>> t = farm.tune("mobilenet-v2", max_drop=1.0)
            >>> t.front[["candidate", "latency_p50_ms", "drop_points"]]; t.cards[0].reproduce
        """
        from edgefarm.controller.tuning.tune_run import TuneConfig

        with translated():
            if self._local_only and device not in (None, LOCAL):
                raise BadInputError(f"Farm.local() measures on its embedded agent only; for device {device!r} "
                                    "use edgefarm.Farm(devices='devices.yaml')")
            from edgefarm.controller.planning.input_plan import parse_shape_args

            full = check_measure(measure) if measure else TuneConfig("").full
            config = TuneConfig(str(model), None if self._local_only else device,
                                str(self.devices) if self.devices else None, max_drop, objective,
                                tuple(recipes or ()), tuple(backends or ()), max_jobs,
                                parse_shape_args(_shape_args(shapes)), _str(inputs), _str(calib_data),
                                _str(eval_data), full, hwmp)
            return self._tune(config, progress)

    def _tune(self, config, progress: bool) -> Tuning:
        from edgefarm.controller.tuning.tune_run import run_tune

        ui = _Console(progress)
        where = f"--device {config.device}" if config.device else "--local"
        flags = tuple(f"--{k} {v}" for k, v in (("calib-data", config.calib_data), ("eval-data", config.eval_data),
                                                ("inputs", config.inputs)) if v)
        with self._store() as store, ui.live():
            outcome = run_tune(config, store, ui, self.cache_dir, self._leases_url() if config.device else None)
            return Tuning.of(outcome, store.path, where, flags)

    # --- reading the store ----------------------------------------------------------------------

    def get_run(self, run_id: str = "latest") -> Run:
        """A stored run as `Farm.run` returns it: its frame, typed results and failed jobs.

        Example:
            >>> farm.get_run("latest").frame[["variant", "latency_p50_ms"]]
        """
        with translated(), self._store() as store:
            return _load(store, self._resolve(store, run_id))

    def report(self, run_id: str = "latest", *, csv: str | Path | bool | None = None,
               html: str | Path | bool | None = None) -> Report:
        """Write a stored run's CSV and/or self-contained HTML report (reads the store, never measures).
        True for either writes report-RUN_ID.csv / .html; None writes nothing and returns the frame.

        Example:
            >>> farm.report(run.id, html="report.html").html
            PosixPath('report.html')
        """
        with translated(), self._store() as store:
            run_id = self._resolve(store, run_id)
            stored = store.results(run_id)
            frame = pd.DataFrame([result_row(r) for r in stored])
            if frame.empty and (csv or html):
                raise BadInputError(f"run {run_id} has no stored results (every job failed or it was "
                                    "interrupted early)")
            return Report(run_id, frame, *_write_reports(frame, run_id, csv, html, layer_tables(stored)))

    def diff(self, a: str, b: str, *, device: str | None = None, csv: str | Path | None = None,
             html: str | Path | None = None) -> Diff:
        """Line up two stored results' per-layer profiles, as `edgefarm diff` does (reads the store,
        never measures): groups of layers sharing source nodes, then an order-preserving match on op
        family and output shape, then what only one side has. a / b: a result (job id), RUN:VARIANT
        ("latest:fp32"), or a run holding one result on `device`. csv / html: also write the groups as
        CSV and a self-contained page in the report's style.

        Raises BadInputError when a side is not found, is ambiguous, or has no layer profile (the
        message names the side and how to make one: measure with Measure(profile=True) / --profile).

        Example:
            >>> farm.run("mobilenet-v2", recipes=["fp32", "int8-static"],
            ...          measure=edgefarm.Measure(profile=True))
            >>> d = farm.diff("latest:fp32", "latest:int8-static", html="diff.html")
            >>> d.frame[["family", "time_a_us", "time_b_us", "ratio", "note"]]
        """
        from edgefarm.controller.reports.layer_diff import diff_results

        with translated(), self._store() as store:
            found = diff_results(store, a, b, device)
        return Diff.of(found, *_write_diff(found, _path(csv), _path(html)))

    def stored_runs(self, *, since: str | date | datetime | float | None = None,
                    limit: int | None = 20) -> tuple[RunSummary, ...]:
        """The stored runs, newest first, as typed records (what `edgefarm runs --json` prints).

        Example:
            >>> [r.status for r in farm.stored_runs(limit=3)]
            ['done', 'done', 'partial']
        """
        with translated():
            start = _timestamp(since)
        with translated(), self._store() as store:
            runs = [r for r in store.run_summaries(None if start is not None else limit)
                    if start is None or r.created_at >= start]
        return tuple(runs[:limit] if limit is not None else runs)

    def runs(self, *, since: str | date | datetime | float | None = None, limit: int | None = 20) -> pd.DataFrame:
        """The stored runs, newest first, as a DataFrame: id, created_at (UTC), command, kind, status,
        verdict, results, failures. since: a date or time ("2026-11-01", a datetime, a Unix time).

        Example:
            >>> farm.runs(since="2026-11-01")[["id", "status", "results"]]
        """
        return runs_frame(self.stored_runs(since=since, limit=limit))

    def history(self, *, model: str | None = None, device: str | None = None,
                since: str | date | datetime | float | None = None, html: str | Path | None = None) -> History:
        """The stored nights of each benchmark series (model, recipe, device, backend, input shapes) and
        the change points in them: where a median stepped to a new level and stayed. html: also write
        the trend with the change points marked. BadInputError when no series has enough nights.

        Example:
            >>> history = farm.history(device="jetson-orin-01", since="2026-11-01")
            >>> history.points[["series", "run_id", "step", "confirmed"]]
        """
        from edgefarm.api.history import load_history, write_history_html
        from edgefarm.controller.nightly.history import HistoryFilter

        with translated(), self._store() as store:
            history = load_history(store, HistoryFilter(model, device, _timestamp(since)))
            if html is not None:
                write_history_html(store, history, Path(html))
            return history

    # --- the farm -------------------------------------------------------------------------------

    def nightly(self, matrix: str | Path, *, baseline: str = "last-good", out: str | Path = "nightly-out",
                lease_wait: float = LEASE_WAIT_S, progress: bool = True) -> NightlyOutcome:
        """Run the matrix over the devices file's boards and judge every benchmark against the
        baseline night on raw samples; writes report.csv, report.html and junit.xml to `out`.
        exit_code: 0 good, 1 confirmed regression, 3 not everything planned was measured.

        Example:
            >>> night = farm.nightly("nightly.yaml", out="nightly-out")
            >>> night.frame[["recipe", "device", "verdict", "why"]]
        """
        from edgefarm.controller.execution.farm import RetryPolicy
        from edgefarm.controller.execution.farm_run import FarmRunConfig
        from edgefarm.controller.nightly.run import run_nightly

        with translated():
            devices = self.devices or Path("devices.yaml")
            config = FarmRunConfig(str(Path(matrix).resolve()), str(devices.resolve()), self._leases_url(),
                                   str(self.cache_dir.resolve()))
            with self._store() as store:
                report = run_nightly(config, store, _Console(progress), baseline, Path(out),
                                     RetryPolicy(lease_wait_s=lease_wait))
            return NightlyOutcome.of(report, Path(out))

    def resume(self, run_id: str, *, out: str | Path = "nightly-out",
               progress: bool = True) -> NightlyOutcome | Resumed:
        """Finish an interrupted farm run without redoing the jobs already done. A night ends exactly
        as an uninterrupted one (verdicts, reports, JUnit in `out`); any other farm run says how many
        jobs finished now.

        Example:
            >>> farm.resume("20261124-020000-ab12cd").exit_code
            0
        """
        from edgefarm.controller.execution.farm_run import FarmRun
        from edgefarm.controller.nightly.run import KIND, resume_night, stored_config

        with translated(), self._store() as store:
            if not store.run_exists(run_id):
                raise BadInputError(f"no run {run_id!r} in {store.path}; list runs with 'edgefarm runs'")
            if store.run_kind(run_id) == "bisect":
                raise BadInputError(f"run {run_id} is a bisect: its search so far is stored with it; start it "
                                    "again with 'edgefarm bisect' (each step is one job)")
            if store.run_kind(run_id) == "tune":
                raise BadInputError(f"run {run_id} is a tune: what it measured is stored with it; run the same "
                                    "'edgefarm tune' again (its variants come from the cache)")
            ui = _Console(progress)
            if store.run_kind(run_id) == KIND:
                return NightlyOutcome.of(resume_night(store, ui, run_id, Path(out)), Path(out))
            config, _ = stored_config(store, run_id)
            result = FarmRun(config, store, ui).resume(run_id)
            return Resumed(run_id, result.outcome.done, len(result.outcome.failed))

    # --- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _store(self) -> Iterator[ResultStore]:
        store = ResultStore(self.db)
        try:
            yield store
        finally:
            store.close()

    def _leases_url(self) -> str:
        return leases_url(self.leases, self.db, self.devices)

    @staticmethod
    def _resolve(store: ResultStore, run_id: str) -> str:
        resolved = store.latest_run() if run_id == "latest" else run_id
        if resolved is None or not store.run_exists(resolved):
            raise BadInputError(f"no run {run_id!r} in {store.path}; list runs with 'edgefarm runs' "
                                "or pass --db for another database")
        return resolved


def check_recipes(recipes: Sequence[str]) -> None:
    """Named recipes and one-line chains ('structured-prune(0.5) -> finetune -> int8-static') are
    validated before any training starts; a bad one raises the compressors' own clear error."""
    from edgefarm.compressors.recipes import get_recipe

    for recipe in recipes:
        get_recipe(recipe)


def check_backend(backend: str, target: Target, model: str, recipes: Sequence[str]) -> None:
    """--backend NAME: a backend edgefarm knows, on the board, and able to run every variant's format;
    refused before anything is compressed, naming what would work."""
    from edgefarm.controller.config.inventory import BACKENDS
    from edgefarm.controller.execution.farm_run import planned_format
    from edgefarm.controller.planning.backends import NoBackendError, choose_backend

    if not backend:
        return
    if backend not in BACKENDS:
        raise BadInputError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    for recipe in recipes:
        try:
            choose_backend(target.backends, planned_format(model, recipe), backend)
        except NoBackendError as exc:
            raise BadInputError(f"--backend {backend} for {recipe}: {exc}") from None


def _load(store: ResultStore, run_id: str, failures: tuple | None = None) -> Run:
    from edgefarm.controller.planning.run_plan import JobFailure

    stored = store.results(run_id)
    if failures is None:
        failures = tuple(JobFailure(job.variant, job.device, kind, message)
                         for job, kind, message in store.failures(run_id))
    return Run(run_id, store.path, pd.DataFrame([result_row(r) for r in stored]),
               tuple(ResultRecord.from_stored(r) for r in stored), failures)


def _write_reports(frame: pd.DataFrame, run_id: str, csv, html, layers: LayerTables) -> tuple[Path | None, Path | None]:
    from edgefarm.controller.reports import write_csv, write_html

    csv_path = Path(f"report-{run_id}.csv") if csv is True else _path(csv or None)
    html_path = Path(f"report-{run_id}.html") if html is True else _path(html or None)
    if csv_path is not None:
        csv_path = write_csv(frame, csv_path)
    if html_path is not None:
        html_path = write_html(frame, html_path, title=f"edgefarm run {run_id}", layers=layers)
    return csv_path, html_path


def _write_diff(diff: LayerDiff, csv: Path | None, html: Path | None) -> tuple[Path | None, Path | None]:
    from edgefarm.controller.reports.html_report import write_page
    from edgefarm.controller.reports.layer_html import diff_html

    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        diff.frame().to_csv(csv, index=False)
    if html is not None:
        write_page(diff_html(diff), html)
    return csv, html


def _shape_args(shapes: Shapes | None) -> list[str]:
    if shapes is None:
        return []
    if isinstance(shapes, Mapping):
        return [f"{name}:{'x'.join(str(d) for d in dims)}" for name, dims in shapes.items()]
    return [shapes] if isinstance(shapes, str) else list(shapes)


def _str(value: str | Path | None) -> str | None:
    return str(value) if value is not None else None


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


def _timestamp(since: str | date | datetime | float | None) -> float | None:
    if since is None or isinstance(since, int | float):
        return since
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise BadInputError(f"since={since!r} is not a date or time; e.g. '2026-11-01' or "
                                "'2026-11-01T20:00'") from None
    if not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day)
    return (since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp()
