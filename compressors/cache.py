"""The on-disk cache: entries appear whole or not at all.

Every entry is built in a hidden staging directory beside its final place and
renamed into place in one step, so a crash or a killed run never leaves a
half-written entry that a later run would mistake for a finished one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so large models need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_current_model(model_dir: Path, cache_format: int, files: Iterable[str]) -> bool:
    """A trained model's cache entry is usable: its training.json names this cache format and
    every file it should hold is there (an older format is rebuilt, not half-reused)."""
    try:
        record = json.loads((model_dir / "training.json").read_text())
    except (OSError, ValueError):
        return False
    return record.get("cache_format") == cache_format and all((model_dir / name).is_file() for name in files)
