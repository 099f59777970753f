"""The on-disk cache: entries appear whole or not at all.

Every entry is built in a hidden staging directory beside its final place and
renamed into place in one step, so a crash or a killed run never leaves a
half-written entry that a later run would mistake for a finished one.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

_STAGING_PREFIX = ".staging-"


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty directory; on success it becomes `final`, on any error it is removed.

    If another process published `final` first, its copy wins and ours is discarded:
    both were built from the same inputs.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{final.name}-", dir=final.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a published cache entry is as readable as its parent
    try:
        yield staging
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, final: Path) -> None:
    try:
        os.rename(staging, final)
    except OSError:
        if not final.is_dir():
            raise


def is_current_model(model_dir: Path, cache_format: int, files: Iterable[str]) -> bool:
    """A trained model's cache entry is usable: its training.json names this cache format and
    every file it should hold is there (an older format is rebuilt, not half-reused)."""
    try:
        record = json.loads((model_dir / "training.json").read_text())
    except (OSError, ValueError):
        return False
    return record.get("cache_format") == cache_format and all((model_dir / name).is_file() for name in files)


def write_npz_once(entry: Path, arrays: dict[str, np.ndarray]) -> None:
    """Publish `arrays` as the .npz `entry` in one rename, unless it exists. np.savez stamps the time
    into the zip, so a rewrite would change the bytes, and the sha256 a board already holds it by."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{entry.stem}-", suffix=".tmp", dir=entry.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            np.savez(stream, **arrays)
        os.chmod(temp, 0o644)  # mkstemp makes it private; a cache entry is as readable as its folder
        if not entry.exists():  # a concurrent run published first: keep its bytes, they may be shipped already
            os.replace(temp, entry)
    finally:
        Path(temp).unlink(missing_ok=True)
