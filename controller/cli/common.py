"""What every subcommand shares: where data lives, measuring flags, and user-facing errors."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import platformdirs

from edgefarm.controller.planning.run_plan import MeasureSettings


class CliError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEFARM_CACHE_DIR") or platformdirs.user_cache_dir("edgefarm"))


def default_db() -> str:
    from_env = os.environ.get("EDGEFARM_DB")
    return results_db(from_env, "EDGEFARM_DB") if from_env else \
        str(Path(platformdirs.user_data_dir("edgefarm")) / "results.sqlite")


def results_db(value: str, where: str = "--db") -> str:
    """A results database: a file path, sqlite:///path or postgresql://user@host/db. Any other URL is
    refused: taken as a path, 'mysql://host/db' would quietly become a local SQLite file named 'mysql:/host/db'."""
    from edgefarm.controller.results.store import StoreError, database_url

    try:
        database_url(value, where)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    return value


def add_storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=str, default=None,
                        help="results database: a SQLite file, sqlite:///path or postgresql://user@host/db "
                             "(default: $EDGEFARM_DB or a file in the user data dir)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="models and compressed variants (default: $EDGEFARM_CACHE_DIR or the user cache dir)")


def add_measure_flags(parser: argparse.ArgumentParser) -> None:
    d = MeasureSettings()
    group = parser.add_argument_group("measuring")
    group.add_argument("--warmup-seconds", type=float, default=d.warmup_seconds, help="minimum warm-up time")
    group.add_argument("--min-seconds", type=float, default=d.min_seconds, help="minimum measuring time")
    group.add_argument("--min-iterations", type=int, default=d.min_iterations, help="minimum measured iterations")
    group.add_argument("--max-iterations", type=int, default=d.max_iterations, help="cap on measured iterations")
    group.add_argument("--batch-size", type=int, default=None,
                       help="fills a dynamic leading batch dimension (default 1, or what --shape/--inputs give)")
    group.add_argument("--streams", type=int, default=d.streams,
                       help="throughput mode: N concurrent streams (latency is then per request under load)")
    group.add_argument("--timeout", type=float, default=d.timeout_seconds, help="per-job timeout in seconds")
    group.add_argument("--profile", action="store_true",
                       help="after measuring, a separate per-layer profiling pass (never in the headline latency); "
                            "compare two with `edgefarm diff`")


def measure_settings(args: argparse.Namespace) -> MeasureSettings:
    for name in ("warmup_seconds", "min_seconds", "timeout"):
        # 0 is refused too: on the wire 0 means "unset", and the board would silently use its default.
        if getattr(args, name) <= 0:
            raise CliError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)} "
                           "(0 would make the board fall back to its own default)")
    batch = 1 if args.batch_size is None else args.batch_size
    if min(batch, args.min_iterations, args.streams) < 1 or args.max_iterations < args.min_iterations:
        raise CliError("--batch-size, --streams and --min-iterations must be ≥ 1, "
                       "and --max-iterations ≥ --min-iterations")
    return MeasureSettings(warmup_seconds=args.warmup_seconds, min_seconds=args.min_seconds,
                           min_iterations=args.min_iterations, max_iterations=args.max_iterations,
                           batch_size=args.batch_size, timeout_seconds=args.timeout, streams=args.streams,
                           profile=args.profile)


def cache_dir(args: argparse.Namespace) -> Path:
    return args.cache_dir or default_cache_dir()


def db_path(args: argparse.Namespace) -> str:
    return results_db(args.db) if args.db else default_db()


def leases_url(args: argparse.Namespace) -> str:
    """--leases, else $EDGEFARM_LEASES, else beside the results: the same PostgreSQL database, or a
    SQLite file next to the results file."""
    from edgefarm.controller.leases import sqlite_url

    explicit = getattr(args, "leases", None) or os.environ.get("EDGEFARM_LEASES")
    if explicit:
        return explicit
    db = db_path(args) if getattr(args, "db", None) else default_db()
    if db.startswith(("postgresql://", "postgres://")):
        return db
    return sqlite_url(Path(db.removeprefix("sqlite:///")).with_name("leases.sqlite"))
