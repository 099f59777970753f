"""The on-disk cache: entries appear whole or not at all.

Every entry is built in a hidden staging directory beside its final place and
renamed into place in one step, so a crash or a killed run never leaves a
half-written entry that a later run would mistake for a finished one.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
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
