"""Where a farm's data lives and how hard it measures: the settings the CLI's flags and the API's
arguments share, resolved and validated in one place (each refusal is the CLI's one line)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from edgefarm.api.errors import BadInputError
from edgefarm.controller.planning.run_plan import MeasureSettings

Measure = MeasureSettings
"""How long and how often each variant is measured (warm-up, minimum time and count, caps, batch,
streams, timeout). ``edgefarm.Measure(warmup_seconds=0.05, min_seconds=0.2)`` measures quickly."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEFARM_CACHE_DIR") or platformdirs.user_cache_dir("edgefarm"))


def default_db() -> str:
    from_env = os.environ.get("EDGEFARM_DB")
    return results_db(from_env, "EDGEFARM_DB") if from_env else \
        str(Path(platformdirs.user_data_dir("edgefarm")) / "results.sqlite")


def results_db(value: str | Path, where: str = "--db") -> str:
    """A results database: a file path, sqlite:///path or postgresql://user@host/db. Any other URL is
    refused: taken as a path, 'mysql://host/db' would quietly become a local SQLite file named 'mysql:/host/db'."""
    from edgefarm.controller.results.store import StoreError, database_url

    try:
        database_url(str(value), where)
    except StoreError as exc:
        raise BadInputError(str(exc)) from None
    return str(value)


def shown_location(db: str) -> str:
    """Where results are, for messages: a file path, or the URL without its password (as ResultStore.path)."""
    import sqlalchemy as sa

    from edgefarm.controller.results.store import database_url

    url = sa.engine.make_url(database_url(db))
    shown = url.set(drivername=url.get_backend_name())
    return url.database if url.drivername == "sqlite" else shown.render_as_string(hide_password=True)


def leases_url(explicit: str | None, db: str | None, devices: Path | None = None) -> str:
    """The devices file's `leases:`, else `explicit`, else $EDGEFARM_LEASES, else beside the results:
    the same PostgreSQL database, or a SQLite file next to the results file (db None: the default
    results database). An explicit one that differs from the file's is refused: two controllers on
    two lease databases double-book boards."""
    from edgefarm.controller.leases import sqlite_url

    given, flag = (explicit, "--leases") if explicit else (os.environ.get("EDGEFARM_LEASES", ""), "$EDGEFARM_LEASES")
    declared, where = _declared_leases(devices)
    if declared and given and given != declared:
        raise BadInputError(f"{where}: this farm's lease database is {_masked(declared)}, but {flag} gives "
                            f"{_masked(given)}; drop {flag} (or change leases: in the devices file): boards "
                            "leased in two databases get double-booked")
    if declared or given:
        return declared or given
    db = results_db(db) if db else default_db()
    if db.startswith(("postgresql://", "postgres://")):
        return db
    return sqlite_url(Path(db.removeprefix("sqlite:///")).with_name("leases.sqlite"))


def _declared_leases(devices: Path | None) -> tuple[str, str]:
    """(URL, file:line) of the devices file's `leases:`; ("", "") when it declares none or is absent."""
    from edgefarm.controller.config.inventory import load_inventory
    from edgefarm.controller.config.targets import DEFAULT_DEVICES_FILE

    path = Path(devices or DEFAULT_DEVICES_FILE)
    if not path.is_file():
        return "", ""
    inventory = load_inventory(path)
    return inventory.leases, inventory.leases_where


def _masked(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def check_measure(m: MeasureSettings) -> MeasureSettings:
    """The settings as given, or BadInputError for one that would silently become something else."""
    for name, value in (("warmup_seconds", m.warmup_seconds), ("min_seconds", m.min_seconds),
                        ("timeout", m.timeout_seconds)):
        # 0 is refused too: on the wire 0 means "unset", and the board would silently use its default.
        if value <= 0:
            raise BadInputError(f"--{name.replace('_', '-')} must be > 0, got {value} "
                                "(0 would make the board fall back to its own default)")
    batch = 1 if m.batch_size is None else m.batch_size
    if min(batch, m.min_iterations, m.streams) < 1 or m.max_iterations < m.min_iterations:
        raise BadInputError("--batch-size, --streams and --min-iterations must be ≥ 1, "
                            "and --max-iterations ≥ --min-iterations")
    return m


@dataclass(frozen=True)
class DataFiles:
    """A run's own data: calibration and evaluation sets (an .npz, or a folder of images turned into
    one with `preprocess`) and the input tensors to measure with."""

    calib: Path | None = None
    eval: Path | None = None
    preprocess: str | None = None

    def as_npz(self, cache_dir: Path) -> tuple[Path | None, Path | None]:
        return self._npz(self.calib, "--calib-data", cache_dir), self._npz(self.eval, "--eval-data", cache_dir)

    def _npz(self, path: Path | None, flag: str, cache_dir: Path) -> Path | None:
        from edgefarm.compressors.images import folder_to_npz, is_image_folder, parse_preprocess

        if path is None or not is_image_folder(path):
            return path
        if self.preprocess is None:
            raise BadInputError(f"{flag} {path} is a folder of images: say how to turn them into tensors with "
                                '--preprocess, e.g. --preprocess "size=224x224,scale=1/255,layout=nchw,color=rgb"')
        return folder_to_npz(path, parse_preprocess(self.preprocess), cache_dir, context=flag)
