"""The versioned migration chain of the results schema, run when a store opens.

Each step takes the schema from version N to N+1 inside the one transaction that opens the store,
so a failed upgrade leaves the database as it was. Written by hand rather than with Alembic: the
chain is two steps long, runs in-process on every open, and must work on a user's old SQLite file
without a migrations folder beside it.

- 1 → 2: columns added to store v1 (run kind, plan and verdict; job target and attempts; variant details).
- 2 → 3: store v2. Results were one serialized protobuf blob each; now every statistic is a column.
- 3 → 4: run liveness: which controller runs a run, and its last heartbeat.
- 4 → 5: per-layer tables (layer_profiles, layers), linked to their result's job.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa

from edgefarm.controller.agents.wire import result_from_bytes
from edgefarm.controller.results import schema

log = logging.getLogger(__name__)

_V2_COLUMNS = {
    "runs": ("kind TEXT NOT NULL DEFAULT 'run'", "plan TEXT", "verdict TEXT"),
    "jobs": ("target TEXT", "attempts INTEGER NOT NULL DEFAULT 0"),
    "variants": ("details TEXT",),
}


class NewerSchemaError(Exception):
    pass


def stored_version(conn: sa.Connection) -> int | None:
    """None for an empty database; 1 for a store v1 file that predates the meta table's version row."""
    tables = set(sa.inspect(conn).get_table_names())
    if "runs" not in tables:
        return None
    if "meta" not in tables:
        return 1
    value = conn.execute(sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).scalar()
    return int(value) if value is not None else 1


def upgrade(conn: sa.Connection, location: str) -> None:
    """Bring the schema to schema.SCHEMA_VERSION, creating it in an empty database."""
    version = stored_version(conn)
    if version is None:
        schema.metadata.create_all(conn)
        _set_version(conn, schema.SCHEMA_VERSION)
        return
    if version > schema.SCHEMA_VERSION:
        raise NewerSchemaError(f"results database {location} has schema version {version}, written by a newer "
                               f"edgefarm (this one reads up to {schema.SCHEMA_VERSION}); upgrade edgefarm")
    for step_version in range(version, schema.SCHEMA_VERSION):
        log.info("migrating results database %s from schema %d to %d", location, step_version, step_version + 1)
        _STEPS[step_version](conn)
    if version < schema.SCHEMA_VERSION:
        _set_version(conn, schema.SCHEMA_VERSION)


def _set_version(conn: sa.Connection, version: int) -> None:
    conn.execute(sa.delete(schema.meta).where(schema.meta.c.key == "schema_version"))
    conn.execute(sa.insert(schema.meta).values(key="schema_version", value=str(version)))


def _add_v2_columns(conn: sa.Connection) -> None:
    schema.meta.create(conn, checkfirst=True)
    inspector = sa.inspect(conn)
    for table, columns in _V2_COLUMNS.items():
        have = {column["name"] for column in inspector.get_columns(table)}
        for column in columns:
            if column.split()[0] not in have:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column}")


def _results_to_columns(conn: sa.Connection) -> None:
    """Decode every stored Result message into the v2 columns; the device comes from its job row."""
    conn.exec_driver_sql("ALTER TABLE results RENAME TO results_store_v1")
    schema.results.create(conn)
    old = conn.exec_driver_sql(
        "SELECT r.job_id, r.run_id, r.measured_at, r.result, j.device "
        "FROM results_store_v1 r JOIN jobs j ON j.id = r.job_id").fetchall()
    for job_id, run_id, measured_at, blob, device in old:
        row = schema.result_row(result_from_bytes(blob), device, measured_at)
        conn.execute(sa.insert(schema.results).values(job_id=job_id, run_id=run_id, **row))
    conn.exec_driver_sql("DROP TABLE results_store_v1")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_jobs_run_id ON jobs (run_id)")


def _add_run_liveness(conn: sa.Connection) -> None:
    for column in (schema.runs.c.controller, schema.runs.c.heartbeat_at):
        kind = column.type.compile(dialect=conn.dialect)   # FLOAT is double precision on PostgreSQL too
        conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {column.name} {kind}")


def _add_layer_tables(conn: sa.Connection) -> None:
    """Profiling passes' tables; results stored before them simply have no profile."""
    schema.layer_profiles.create(conn, checkfirst=True)
    schema.layers.create(conn, checkfirst=True)


# Keyed by the version a step starts from: renumbering a step is a one-line change here.
_STEPS: dict[int, Callable[[sa.Connection], None]] = {1: _add_v2_columns, 2: _results_to_columns,
                                                      3: _add_run_liveness, 4: _add_layer_tables}
