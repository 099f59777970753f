"""The results store: runs, variants, jobs and results in SQLite.

Every result is committed the moment it arrives, so a crash or Ctrl-C loses
nothing already measured. The whole Result message (raw samples, device
description, fingerprint, power) is kept, so any statistic can be recomputed.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from protos import agent_pb2 as pb

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, command TEXT NOT NULL, status TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'run', plan TEXT, verdict TEXT);
CREATE TABLE IF NOT EXISTS variants (
    run_id TEXT NOT NULL REFERENCES runs(id), model TEXT NOT NULL, recipe TEXT NOT NULL,
    params TEXT NOT NULL, sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL, accuracy REAL,
    duration_s REAL NOT NULL, details TEXT, PRIMARY KEY (run_id, model, recipe));
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), model TEXT NOT NULL,
    variant TEXT NOT NULL, device TEXT NOT NULL, backend TEXT NOT NULL, artifact_sha256 TEXT NOT NULL,
    status TEXT NOT NULL, failure_kind TEXT, failure_message TEXT, created_at REAL NOT NULL,
    finished_at REAL, target TEXT, attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id), run_id TEXT NOT NULL, measured_at REAL NOT NULL,
    result BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_run ON jobs(run_id);
"""
# Columns added after schema version 1, for databases created by an older edgefarm.
_ADDED_COLUMNS = {
    "runs": ("kind TEXT NOT NULL DEFAULT 'run'", "plan TEXT", "verdict TEXT"),
    "jobs": ("target TEXT", "attempts INTEGER NOT NULL DEFAULT 0"),
    "variants": ("details TEXT",),
}


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
    result: pb.Result
    measured_at: float


class ResultStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"results database {self.path} cannot be opened: {exc}; "
                             "pass another file with --db") from exc

    def _migrate(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def close(self) -> None:
        self._db.close()

    def new_run(self, command: str, kind: str = "run", plan: dict | None = None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self._write("INSERT INTO runs (id, created_at, command, status, kind, plan) VALUES (?, ?, ?, 'running', ?, ?)",
                    (run_id, time.time(), command, kind, json.dumps(plan) if plan is not None else None))
        return run_id

    def run_plan(self, run_id: str) -> dict:
        row = self._db.execute("SELECT plan FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row[0] is None:
            raise StoreError(f"run {run_id} has no stored plan to resume (only farm runs can be resumed)")
        return json.loads(row[0])

    def set_verdict(self, run_id: str, verdict: str) -> None:
        self._write("UPDATE runs SET verdict = ? WHERE id = ?", (verdict, run_id))

    def runs_of_kind(self, kind: str, limit: int = 30) -> list[tuple[str, str | None]]:
        """(run id, verdict), newest first."""
        return self._db.execute("SELECT id, verdict FROM runs WHERE kind = ? ORDER BY created_at DESC LIMIT ?",
                                (kind, limit)).fetchall()

    def set_job_device(self, job_id: str, device: str, backend: str) -> None:
        self._write("UPDATE jobs SET device = ?, backend = ?, attempts = attempts + 1 WHERE id = ?",
                    (device, backend, job_id))

    def unfinished_jobs(self, run_id: str) -> list[tuple[JobRecord, str]]:
        """Jobs of a run not done yet, with their target (device or pool label)."""
        rows = self._db.execute(
            "SELECT id, run_id, model, variant, device, backend, artifact_sha256, COALESCE(target, device) "
            "FROM jobs WHERE run_id = ? AND status != 'done' ORDER BY created_at", (run_id,)).fetchall()
        return [(JobRecord(*row[:7]), row[7]) for row in rows]

    def finish_run(self, run_id: str, status: str) -> None:
        self._write("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def add_variant(self, run_id: str, v: VariantRecord) -> None:
        self._write("INSERT OR REPLACE INTO variants (run_id, model, recipe, params, sha256, size_bytes, accuracy, "
                    "duration_s, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, v.model, v.recipe, json.dumps(v.params, sort_keys=True), v.sha256,
                     v.size_bytes, v.accuracy, v.duration_s,
                     json.dumps({"stats": v.stats, "steps": v.steps}, default=str)))

    def add_job(self, job: JobRecord, target: str | None = None) -> None:
        self._write("INSERT INTO jobs (id, run_id, model, variant, device, backend, artifact_sha256, status, "
                    "created_at, target) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (job.id, job.run_id, job.model, job.variant, job.device, job.backend,
                     job.artifact_sha256, time.time(), target or job.device))

    def add_result(self, job: JobRecord, result: pb.Result) -> None:
        now = time.time()
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                             (job.id, job.run_id, now, result.SerializeToString()))
            self._db.execute("UPDATE jobs SET status = 'done', finished_at = ? WHERE id = ?", (now, job.id))

    def add_failure(self, job: JobRecord, kind: str, message: str) -> None:
        self._write("UPDATE jobs SET status = 'failed', failure_kind = ?, failure_message = ?, finished_at = ? "
                    "WHERE id = ?", (kind, message, time.time(), job.id))

    def run_exists(self, run_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def run_summaries(self, limit: int = 20) -> list[RunSummary]:
        """The newest `limit` runs with how many results and failed jobs each holds."""
        rows = self._db.execute(
            "SELECT r.id, r.created_at, r.command, r.kind, r.status, r.verdict, "
            "(SELECT COUNT(*) FROM results x WHERE x.run_id = r.id), "
            "(SELECT COUNT(*) FROM jobs j WHERE j.run_id = r.id AND j.status = 'failed') "
            "FROM runs r ORDER BY r.created_at DESC LIMIT ?", (limit,)).fetchall()
        return [RunSummary(*row) for row in rows]

    def latest_run(self) -> str | None:
        row = self._db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def results(self, run_id: str) -> list[StoredResult]:
        rows = self._db.execute(
            "SELECT j.id, j.run_id, j.model, j.variant, j.device, j.backend, j.artifact_sha256, "
            "v.params, v.sha256, v.size_bytes, v.accuracy, v.duration_s, r.result, r.measured_at, v.details "
            "FROM results r JOIN jobs j ON j.id = r.job_id "
            "JOIN variants v ON v.run_id = j.run_id AND v.model = j.model AND v.recipe = j.variant "
            "WHERE r.run_id = ? ORDER BY r.measured_at", (run_id,)).fetchall()
        return [_stored_result(row) for row in rows]

    def failures(self, run_id: str) -> list[tuple[JobRecord, str, str]]:
        rows = self._db.execute(
            "SELECT id, run_id, model, variant, device, backend, artifact_sha256, failure_kind, failure_message "
            "FROM jobs WHERE run_id = ? AND status = 'failed' ORDER BY created_at", (run_id,)).fetchall()
        return [(JobRecord(*row[:7]), row[7], row[8]) for row in rows]

    def _write(self, sql: str, params: tuple) -> None:
        with self._db:  # one transaction, committed on exit
            self._db.execute(sql, params)


def _stored_result(row: tuple) -> StoredResult:
    job = JobRecord(*row[:7])
    details = json.loads(row[14]) if row[14] else {}
    variant = VariantRecord(job.model, job.variant, json.loads(row[7]), row[8], row[9], row[10], row[11],
                            details.get("stats", {}), details.get("steps", []))
    return StoredResult(job, variant, pb.Result.FromString(row[12]), row[13])
