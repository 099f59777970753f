import hashlib
import os

import pytest

from edgefarm.agent.store import ArtifactError, ArtifactStore, StoreFullError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(store: ArtifactStore, data: bytes, sha: str | None = None, chunk: int = 7) -> None:
    writer = store.writer(sha or _sha(data), len(data))
    for i in range(0, len(data), chunk):
        writer.write(data[i:i + chunk])
    writer.commit()


def test_verified_upload_becomes_visible_under_its_hash(tmp_path):
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    data = os.urandom(1000)
    _put(store, data)
    assert store.has(_sha(data))
    assert store.path(_sha(data)).read_bytes() == data
    assert store.present([_sha(data), "0" * 64]) == [_sha(data)]


def test_mismatched_hash_leaves_nothing_behind(tmp_path):
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    data = os.urandom(100)
    with pytest.raises(ArtifactError, match="upload rejected"):
        _put(store, data, sha="a" * 64)
    assert not store.has("a" * 64)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert store.count() == 0


def test_short_upload_is_rejected(tmp_path):
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    writer = store.writer(_sha(b"abcdef"), 6)
    writer.write(b"abc")
    with pytest.raises(ArtifactError, match="got 3 bytes"):
        writer.commit()
    assert store.count() == 0


def test_oversize_upload_is_refused_up_front(tmp_path):
    store = ArtifactStore(tmp_path, max_bytes=1 << 20, max_artifact_bytes=100)
    with pytest.raises(ArtifactError, match="exceeds this agent's cap of 100 bytes"):
        store.writer("b" * 64, 101)


def test_more_bytes_than_declared_is_refused(tmp_path):
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    writer = store.writer(_sha(b"abc"), 3)
    with pytest.raises(ArtifactError, match="larger than its declared"):
        writer.write(b"abcd")
    writer.abort()
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "abc", "", "0" * 63 + "/"])
def test_client_supplied_names_never_become_paths(tmp_path, name):
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    assert not store.has(name)
    with pytest.raises(ArtifactError, match="not a sha256"):
        store.writer(name, 1)


class TickingClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lru_eviction_keeps_recently_used(tmp_path):
    store = ArtifactStore(tmp_path, max_bytes=2500, pin_seconds=0)  # pins are the next test's subject
    blobs = [os.urandom(1000) for _ in range(3)]
    _put(store, blobs[0])
    _put(store, blobs[1])
    os.utime(store.path(_sha(blobs[0])), (1, 1))       # make 0 look old…
    os.utime(store.path(_sha(blobs[1])), (2, 2))
    store.touch(_sha(blobs[0]))                          # …then use it again
    _put(store, blobs[2])
    assert store.has(_sha(blobs[0])) and store.has(_sha(blobs[2]))
    assert not store.has(_sha(blobs[1]))
    assert store.total_bytes() <= 2500


def test_an_artifact_in_use_is_never_evicted_the_upload_is_refused_instead(tmp_path):
    clock = TickingClock()
    store = ArtifactStore(tmp_path, max_bytes=2500, pin_seconds=60, clock=clock)
    variants = [os.urandom(1000) for _ in range(3)]
    _put(store, variants[0])
    _put(store, variants[1])
    with pytest.raises(StoreFullError, match="artifacts in use by jobs of the last 60 s; raise --max-cache-mb"):
        _put(store, variants[2])  # both uploaded a moment ago, for jobs not yet measured
    assert store.has(_sha(variants[0])) and store.has(_sha(variants[1]))
    assert list((tmp_path / "tmp").iterdir()) == []  # the refused upload left nothing behind
    clock.now += 61
    store.touch(_sha(variants[1]))  # a job uses it again: pinned anew
    _put(store, variants[2])        # the first, no longer in use, makes room
    assert not store.has(_sha(variants[0])) and store.has(_sha(variants[1])) and store.has(_sha(variants[2]))


def test_an_artifact_reported_present_is_pinned_too(tmp_path):
    clock = TickingClock()
    store = ArtifactStore(tmp_path, max_bytes=2500, pin_seconds=60, clock=clock)
    old, new = os.urandom(1000), os.urandom(1000)
    _put(store, old)
    clock.now += 61
    assert store.present([_sha(old)]) == [_sha(old)]  # HasArtifacts: the controller will use it
    _put(store, new)
    with pytest.raises(StoreFullError):
        _put(store, os.urandom(1000))
