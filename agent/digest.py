"""The one sha256 of a file for the whole distribution: artifacts are named by it on the agent,
shipped by it from the controller, and cached by it in compressors/ (all of which may import agent/)."""
from __future__ import annotations

import hashlib
import os

CHUNK_BYTES = 1 << 20   # read 1 MiB at a time, so a large model needs little memory


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
