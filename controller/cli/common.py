"""What every subcommand shares: the storage and measuring flags, turned into the API's typed
settings (edgefarm.api.config resolves and validates them), and user-facing errors."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefarm.api import config
from edgefarm.api.config import default_cache_dir, default_db, results_db
from edgefarm.api.errors import BadInputError
from edgefarm.controller.planning.run_plan import MeasureSettings

__all__ = ["CliError", "add_measure_flags", "add_storage_flags", "cache_dir", "db_path", "default_cache_dir",
           "default_db", "farm", "leases_url", "measure_settings", "results_db"]


class CliError(BadInputError):
    """A mistake the user can fix; printed as one line, exit code 2. The API's BadInputError, so a
    script calling the API and the CLI catch the same refusals."""


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
    """The measuring flags as typed settings (the API validates them: edgefarm.api.config.check_measure)."""
    return MeasureSettings(warmup_seconds=args.warmup_seconds, min_seconds=args.min_seconds,
                           min_iterations=args.min_iterations, max_iterations=args.max_iterations,
                           batch_size=args.batch_size, timeout_seconds=args.timeout, streams=args.streams,
                           profile=args.profile)


def farm(args: argparse.Namespace, devices: Path | None = None):
    """The API's Farm over the storage flags (and --leases where the subcommand has it)."""
    from edgefarm.api import Farm

    return Farm(devices, getattr(args, "db", None), cache_dir=getattr(args, "cache_dir", None),
                leases=getattr(args, "leases", None))


def cache_dir(args: argparse.Namespace) -> Path:
    return args.cache_dir or default_cache_dir()


def db_path(args: argparse.Namespace) -> str:
    return results_db(args.db) if args.db else default_db()


def leases_url(args: argparse.Namespace) -> str:
    """The devices file's leases:, --leases, $EDGEFARM_LEASES or beside the results (config.leases_url)."""
    return config.leases_url(getattr(args, "leases", None), getattr(args, "db", None), getattr(args, "devices", None))
