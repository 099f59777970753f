"""Artifacts on the board, named by their sha256 only, capped in size with LRU eviction.

An upload is written to a temporary file and hashed as it arrives; it becomes
visible (renamed to its hash) only once the hash and size match. A client never
chooses a path: names are validated hex digests.

An artifact is pinned for PIN_SECONDS from the moment it is uploaded, reported present or used
by a job: a controller uploads a run's variants first and measures them after, and LRU alone
could evict a variant uploaded a minute ago to make room for the next. When only pinned
artifacts are left to evict, the upload is refused (store full) rather than losing one.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PIN_SECONDS = 3600.0  # longer than any run spends between uploading its variants and measuring them


class ArtifactError(Exception):
    """An upload that cannot be accepted (bad hash, wrong size, too large, disk full)."""


class ArtifactCorruptError(ArtifactError):
    """The bytes that arrived do not match the declared hash or size: damaged on the way, not a bad model."""


class StoreFullError(ArtifactError):
    """This board's disk cannot hold the artifact: another board may."""


def validate_sha256(sha256: str) -> str:
    if not _SHA256.match(sha256 or ""):
        raise ArtifactError(f"not a sha256 hex digest: {sha256[:80]!r}")
    return sha256


class ArtifactStore:
    def __init__(self, root: Path, max_bytes: int, max_artifact_bytes: int | None = None,
                 pin_seconds: float = PIN_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_artifact_bytes = max_artifact_bytes or max_bytes
        self._pin_seconds, self._clock = pin_seconds, clock
        self._pinned_until: dict[str, float] = {}
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        # Uploads cut off when a previous agent died: never visible, but they would fill the disk.
        for stale in (self.root / "tmp").iterdir():
            if stale.is_file():
                stale.unlink()
        self.bytes_received = 0  # counted for the re-upload benchmark (P3)

    def path(self, sha256: str) -> Path:
        return self.root / validate_sha256(sha256)

    def has(self, sha256: str) -> bool:
        return _SHA256.match(sha256 or "") is not None and self.path(sha256).is_file()

    def present(self, digests: Iterable[str]) -> list[str]:
        """The digests held here, pinned: the caller is about to use them."""
        held = [d for d in digests if self.has(d)]
        for digest in held:
            self._pin(digest)
        return held

    def touch(self, sha256: str) -> Path:
        """Mark as recently used (LRU order is by mtime), pin it, and return its path."""
        path = self.path(sha256)
        os.utime(path)
        self._pin(sha256)
        return path

    def _pin(self, sha256: str) -> None:
        self._pinned_until[sha256] = self._clock() + self._pin_seconds

    def _is_pinned(self, sha256: str) -> bool:
        return self._pinned_until.get(sha256, float("-inf")) > self._clock()

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._artifacts())

    def count(self) -> int:
        return len(self._artifacts())

    def writer(self, sha256: str, total_size: int) -> ArtifactWriter:
        validate_sha256(sha256)
        if total_size < 0 or total_size > self.max_artifact_bytes:
            raise ArtifactError(
                f"artifact of {total_size} bytes exceeds this agent's cap of {self.max_artifact_bytes} bytes")
        return ArtifactWriter(self, sha256, total_size)

    def _commit(self, tmp_path: Path, sha256: str, size: int) -> Path:
        self._evict_for(size)
        final = self.path(sha256)
        os.replace(tmp_path, final)
        self._pin(sha256)
        return final

    def _evict_for(self, incoming: int) -> None:
        artifacts = self._artifacts()
        used = sum(p.stat().st_size for p in artifacts)
        evictable = sorted((p for p in artifacts if not self._is_pinned(p.name)), key=lambda p: p.stat().st_mtime)
        while evictable and used + incoming > self.max_bytes:
            oldest = evictable.pop(0)
            size = oldest.stat().st_size
            used -= size
            oldest.unlink()
            log.info("evicted artifact %s (%d bytes, least recently used) for %d incoming bytes",
                     oldest.name[:12], size, incoming)
            self._pinned_until.pop(oldest.name, None)
        if used + incoming > self.max_bytes:
            raise StoreFullError(f"no room for {incoming} bytes: this agent's {self.max_bytes}-byte store holds "
                                 f"{used} bytes of artifacts in use by jobs of the last {self._pin_seconds:g} s; "
                                 "raise --max-cache-mb on the agent, or run fewer variants at once")

    def _artifacts(self) -> list[Path]:
        return [p for p in self.root.iterdir() if p.is_file() and _SHA256.match(p.name)]


class ArtifactWriter:
    """Receives one upload's chunks; commit() verifies and publishes, abort() leaves nothing."""

    def __init__(self, store: ArtifactStore, sha256: str, total_size: int) -> None:
        self._store, self.sha256, self.total_size = store, sha256, total_size
        fd, name = tempfile.mkstemp(dir=store.root / "tmp", prefix=sha256[:12] + ".")
        self._tmp = Path(name)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)
        self._store.bytes_received += len(data)
        if self.received > self.total_size:
            raise ArtifactError(f"upload is larger than its declared {self.total_size} bytes")
        self._hash.update(data)
        try:
            self._file.write(data)
        except OSError as exc:  # ENOSPC: say so plainly, the caller aborts
            raise StoreFullError(f"cannot store artifact on this agent: {exc.strerror}") from exc

    def commit(self) -> Path:
        try:
            self._file.close()  # flushes the buffered tail: on a full disk a small upload fails only here
        except OSError as exc:
            self.abort()
            raise StoreFullError(f"cannot store artifact on this agent: {exc.strerror}") from exc
        digest = self._hash.hexdigest()
        if self.received != self.total_size or digest != self.sha256:
            self.abort()
            raise ArtifactCorruptError(
                f"upload rejected: got {self.received} bytes with sha256 {digest[:16]}…, "
                f"expected {self.total_size} bytes with sha256 {self.sha256[:16]}…")
        try:
            return self._store._commit(self._tmp, self.sha256, self.total_size)
        except StoreFullError:
            self.abort()  # refused for room: the partial file must not fill the disk either
            raise

    def abort(self) -> None:
        self._close()
        self._tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
