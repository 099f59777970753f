"""The results store: runs, variants, jobs and results in SQLite (default) or PostgreSQL (a team's).

Every result is committed the moment it arrives, so a crash or Ctrl-C loses nothing already
measured. Statistics are columns and raw samples are kept, so SQL can read any metric and any
statistic can be recomputed. SQLAlchemy Core speaks both dialects; the schema and its migrations
live in schema.py and migrations.py.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa

from edgefarm.controller.agents.records import BenchmarkResult, LayerProfile
from edgefarm.controller.results import migrations, schema
from edgefarm.controller.results.liveness import RunHeartbeat, effective_status, this_controller
from edgefarm.controller.results.schema import jobs, layer_profiles, layers, results, runs, variants

log = logging.getLogger(__name__)
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
# Serializes schema creation and migration when several controllers open one PostgreSQL store at once.
_PG_MIGRATION_LOCK = 0x6564676566  # "edgef"


class StoreError(Exception):
    pass


@dataclass(frozen=True)
class VariantRecord:
    model: str
    recipe: str
    params: dict
    sha256: str
    size_bytes: int
    accuracy: float | None
    duration_s: float
    stats: dict = field(default_factory=dict)     # params / sparsity / MACs before and after
    steps: list = field(default_factory=list)     # each step of a chain: name, params, duration


@dataclass(frozen=True)
class JobRecord:
    id: str
    run_id: str
    model: str
    variant: str
    device: str
    backend: str
    artifact_sha256: str


@dataclass(frozen=True)
class RunSummary:
    """One stored run, as `edgefarm runs` lists it."""

    id: str
    created_at: float
    command: str
    kind: str
    status: str
    verdict: str | None
    results: int
    failures: int


@dataclass(frozen=True)
class StoredResult:
    job: JobRecord
    variant: VariantRecord
    result: BenchmarkResult
    measured_at: float
    target: str = ""        # what the job asked for: a device, or a pool label ("pool:x86")


def database_url(value: str | Path, where: str = "--db") -> str:
    """A file path, sqlite:///path or postgresql://…, as a SQLAlchemy URL. Any other URL is refused:
    taken as a path, 'mysql://host/db' would quietly become a local file named 'mysql:/host/db'."""
    text = str(value)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if text.startswith(("sqlite:///", "postgresql+psycopg://")):
        return text
    if _URL_SCHEME.match(text):
        raise StoreError(f"{where} {text}: results go to a file path, sqlite:///path or postgresql://user@host/db; "
                         "no other database is supported")
    return f"sqlite:///{Path(text).expanduser()}"


_RESULT_PREFIX = "result_"   # results columns share names with jobs columns (device, backend)
_JOB_COLUMNS = (jobs.c.id, jobs.c.run_id, jobs.c.model, jobs.c.variant, jobs.c.device, jobs.c.backend,
                jobs.c.artifact_sha256)


class ResultStore:
    def __init__(self, where: str | Path) -> None:
        """where: a SQLite file path, sqlite:///path, or postgresql://user@host/db."""
        url = sa.engine.make_url(database_url(where))
        shown = url.set(drivername=url.get_backend_name())  # as the user wrote it: postgresql://, no password
        self.location = url.database if url.drivername == "sqlite" else shown.render_as_string(hide_password=True)
        self._engine = _engine(url)
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                migrations.upgrade(conn, self.location)
        except (sa.exc.SQLAlchemyError, migrations.NewerSchemaError) as exc:
            self._engine.dispose()
            raise StoreError(f"results database {self.location} cannot be opened: {_reason(exc)}; "
                             "pass another with --db") from exc

    @property
    def path(self) -> str:
        """Where the results are, for messages (a file path, or the URL without its password)."""
        return self.location

    def close(self) -> None:
        self._engine.dispose()

    def new_run(self, command: str, kind: str = "run", plan: dict | None = None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        self._write(sa.insert(runs).values(id=run_id, created_at=now, command=command, status="running",
                                           kind=kind, plan=json.dumps(plan) if plan is not None else None,
                                           controller=this_controller(), heartbeat_at=now))
        return run_id

    def beat(self, run_id: str) -> None:
        """This controller still runs `run_id` (see liveness.RunHeartbeat)."""
        self._write(sa.update(runs).where(runs.c.id == run_id).values(heartbeat_at=time.time()))

    def heartbeat(self, run_id: str) -> RunHeartbeat:
        """`with store.heartbeat(run_id):` beats for the run while the block runs."""
        return RunHeartbeat(lambda: self.beat(run_id))

    def run_status(self, run_id: str, now: float | None = None) -> str:
        """The run's status, `abandoned` for a running run whose controller is gone (liveness.py)."""
        row = self._rows(sa.select(runs.c.status, runs.c.controller, runs.c.heartbeat_at).where(runs.c.id == run_id))
        if not row:
            raise StoreError(f"no run {run_id!r} in {self.path}; list runs with 'edgefarm runs'")
        return effective_status(*row[0], now=time.time() if now is None else now)

    def take_over(self, run_id: str) -> None:
        """This controller now runs `run_id` (a resume)."""
        self._write(sa.update(runs).where(runs.c.id == run_id).values(
            status="running", controller=this_controller(), heartbeat_at=time.time()))

    def run_plan(self, run_id: str) -> dict:
        plan = self._scalar(sa.select(runs.c.plan).where(runs.c.id == run_id))
        if plan is None:
            raise StoreError(f"run {run_id} has no stored plan to resume (only farm runs can be resumed)")
        return json.loads(plan)

    def set_plan(self, run_id: str, plan: dict) -> None:
        """Replace a run's stored plan (a bisect keeps its search there, updated after every verdict)."""
        self._write(sa.update(runs).where(runs.c.id == run_id).values(plan=json.dumps(plan)))

    def set_verdict(self, run_id: str, verdict: str) -> None:
        self._write(sa.update(runs).where(runs.c.id == run_id).values(verdict=verdict))

    def runs_of_kind(self, kind: str, limit: int = 30) -> list[tuple[str, str | None]]:
        """(run id, verdict), newest first."""
        query = sa.select(runs.c.id, runs.c.verdict).where(runs.c.kind == kind) \
            .order_by(runs.c.created_at.desc()).limit(limit)
        return [tuple(row) for row in self._rows(query)]

    def set_job_device(self, job_id: str, device: str, backend: str) -> None:
        self._write(sa.update(jobs).where(jobs.c.id == job_id)
                    .values(device=device, backend=backend, attempts=jobs.c.attempts + 1))

    def unfinished_jobs(self, run_id: str) -> list[tuple[JobRecord, str]]:
        """Jobs of a run not done yet, with their target (device or pool label)."""
        query = sa.select(*_JOB_COLUMNS, sa.func.coalesce(jobs.c.target, jobs.c.device)) \
            .where(jobs.c.run_id == run_id, jobs.c.status != "done").order_by(jobs.c.created_at)
        return [(JobRecord(*row[:7]), row[7]) for row in self._rows(query)]

    def finish_run(self, run_id: str, status: str) -> None:
        self._write(sa.update(runs).where(runs.c.id == run_id).values(status=status))

    def add_variant(self, run_id: str, v: VariantRecord) -> None:
        key = (variants.c.run_id == run_id) & (variants.c.model == v.model) & (variants.c.recipe == v.recipe)
        values = dict(run_id=run_id, model=v.model, recipe=v.recipe, params=json.dumps(v.params, sort_keys=True),
                      sha256=v.sha256, size_bytes=v.size_bytes, accuracy=v.accuracy, duration_s=v.duration_s,
                      details=json.dumps({"stats": v.stats, "steps": v.steps}, default=str))
        with self._engine.begin() as conn:
            conn.execute(sa.delete(variants).where(key))
            conn.execute(sa.insert(variants).values(**values))

    def add_job(self, job: JobRecord, target: str | None = None) -> None:
        self._write(sa.insert(jobs).values(
            id=job.id, run_id=job.run_id, model=job.model, variant=job.variant, device=job.device,
            backend=job.backend, artifact_sha256=job.artifact_sha256, status="pending", created_at=time.time(),
            target=target or job.device))

    def add_result(self, job: JobRecord, result: BenchmarkResult) -> None:
        now = time.time()
        with self._engine.begin() as conn:
            conn.execute(sa.delete(results).where(results.c.job_id == job.id))
            conn.execute(sa.insert(results).values(job_id=job.id, run_id=job.run_id,
                                                   **schema.result_row(result, job.device, now)))
            conn.execute(sa.update(jobs).where(jobs.c.id == job.id).values(status="done", finished_at=now))
            _write_layer_profile(conn, job, result)

    def add_failure(self, job: JobRecord, kind: str, message: str) -> None:
        self._write(sa.update(jobs).where(jobs.c.id == job.id).values(
            status="failed", failure_kind=kind, failure_message=message, finished_at=time.time()))

    def run_kind(self, run_id: str) -> str | None:
        """run, nightly, nightly-rerun, ...; None for an unknown run."""
        return self._scalar(sa.select(runs.c.kind).where(runs.c.id == run_id))

    def run_of_job(self, job_id: str) -> str | None:
        return self._scalar(sa.select(jobs.c.run_id).where(jobs.c.id == job_id))

    def run_exists(self, run_id: str) -> bool:
        return self._scalar(sa.select(runs.c.id).where(runs.c.id == run_id)) is not None

    def run_summaries(self, limit: int = 20, now: float | None = None) -> list[RunSummary]:
        """The newest `limit` runs with how many results and failed jobs each holds; a running run
        whose controller is gone shows as abandoned."""
        measured = sa.select(sa.func.count()).where(results.c.run_id == runs.c.id).scalar_subquery()
        failed = sa.select(sa.func.count()).where(jobs.c.run_id == runs.c.id, jobs.c.status == "failed") \
            .scalar_subquery()
        query = sa.select(runs.c.id, runs.c.created_at, runs.c.command, runs.c.kind, runs.c.status, runs.c.verdict,
                          measured, failed, runs.c.controller, runs.c.heartbeat_at) \
            .order_by(runs.c.created_at.desc()).limit(limit)
        now = time.time() if now is None else now
        return [RunSummary(*row[:4], effective_status(row.status, row.controller, row.heartbeat_at, now), *row[5:8])
                for row in self._rows(query)]

    def latest_run(self) -> str | None:
        return self._scalar(sa.select(runs.c.id).order_by(runs.c.created_at.desc()).limit(1))

    def results(self, run_id: str) -> list[StoredResult]:
        query = sa.select(*_JOB_COLUMNS, variants.c.params, variants.c.sha256, variants.c.size_bytes,
                          variants.c.accuracy, variants.c.duration_s, variants.c.details,
                          sa.func.coalesce(jobs.c.target, jobs.c.device).label("target"),
                          *(column.label(_RESULT_PREFIX + column.name) for column in results.c)) \
            .select_from(results.join(jobs, jobs.c.id == results.c.job_id)
                         .join(variants, (variants.c.run_id == jobs.c.run_id) & (variants.c.model == jobs.c.model)
                               & (variants.c.recipe == jobs.c.variant))) \
            .where(results.c.run_id == run_id).order_by(results.c.measured_at)
        profiles = self.layer_profiles(run_id)
        stored = [_stored_result(row) for row in self._rows(query)]
        return [replace(s, result=replace(s.result, layer_profile=profiles.get(s.job.id))) for s in stored]

    def layer_profiles(self, run_id: str) -> dict[str, LayerProfile]:
        """Job id -> its profiling pass, for the jobs of a run that had one."""
        with self._engine.connect() as conn:
            heads = list(conn.execute(sa.select(layer_profiles).where(layer_profiles.c.run_id == run_id)))
            rows = list(conn.execute(sa.select(layers).where(layers.c.run_id == run_id)
                                     .order_by(layers.c.job_id, layers.c.position)))
        by_job: dict[str, list] = {}
        for row in rows:
            by_job.setdefault(row.job_id, []).append(row)
        return {head.job_id: schema.layer_profile_from_rows(head, by_job.get(head.job_id, [])) for head in heads}

    def failures(self, run_id: str) -> list[tuple[JobRecord, str, str]]:
        query = sa.select(*_JOB_COLUMNS, jobs.c.failure_kind, jobs.c.failure_message) \
            .where(jobs.c.run_id == run_id, jobs.c.status == "failed").order_by(jobs.c.created_at)
        return [(JobRecord(*row[:7]), row[7], row[8]) for row in self._rows(query)]

    def _write(self, statement: sa.Executable) -> None:
        with self._engine.begin() as conn:  # one transaction, committed on exit
            conn.execute(statement)

    def _rows(self, query: sa.Select) -> list[sa.Row]:
        with self._engine.connect() as conn:
            return list(conn.execute(query))

    def _scalar(self, query: sa.Select):
        with self._engine.connect() as conn:
            return conn.execute(query).scalar()


def _write_layer_profile(conn: sa.Connection, job: JobRecord, result: BenchmarkResult) -> None:
    conn.execute(sa.delete(layers).where(layers.c.job_id == job.id))
    conn.execute(sa.delete(layer_profiles).where(layer_profiles.c.job_id == job.id))
    if result.layer_profile is None:
        return
    head, rows = schema.layer_profile_rows(result.layer_profile)
    conn.execute(sa.insert(layer_profiles).values(job_id=job.id, run_id=job.run_id, **head))
    if rows:
        conn.execute(sa.insert(layers), [{**row, "job_id": job.id, "run_id": job.run_id} for row in rows])


def _engine(url: sa.URL) -> sa.Engine:
    if url.drivername != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_connection, _record) -> None:  # readers never block the writer of a live run
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
    return engine


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _stored_result(row: sa.Row) -> StoredResult:
    job = JobRecord(*row[:7])
    details = json.loads(row.details) if row.details else {}
    variant = VariantRecord(job.model, job.variant, json.loads(row.params), row.sha256, row.size_bytes,
                            row.accuracy, row.duration_s, details.get("stats", {}), details.get("steps", []))
    measured = SimpleNamespace(**{key[len(_RESULT_PREFIX):]: value for key, value in row._mapping.items()
                                  if key.startswith(_RESULT_PREFIX)})
    return StoredResult(job, variant, schema.result_from_row(measured, job.id), measured.measured_at, row.target)
